"""Prove on a machine with a GPU that a model replica and a job run see and use their assigned
GPU (docs/resources.md). It skips, saying so, where there is no GPU (as on the machine this
project is developed on, whose tests inject a fake device list instead).

    python benchmarks/gpu_check.py

What it does, through the local runtime (real processes, real devices):

1. discovers the GPUs (NVML via nvidia-ml-py, else nvidia-smi) and needs PyTorch with CUDA;
2. starts a replica with ``gpus=1`` and a run with ``gpus=1`` side by side: each gets its own
   device in ``CUDA_VISIBLE_DEVICES`` (with one GPU, the run waits for the replica's and the
   script prints that it waited);
3. in each, multiplies two 2048x2048 matrices on ``cuda:0`` and checks the result against the
   CPU, printing the device name, ``CUDA_VISIBLE_DEVICES`` and the time;
4. exits 0 when both saw exactly their device and computed on it, 1 otherwise, 0 with
   ``SKIP: ...`` where there is no GPU or no CUDA-enabled PyTorch.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

from modelyard.runtime import LocalRuntime, ReplicaSpec, RunSpec
from modelyard.runtime.resources import discover_gpus

WORK = """
import os, sys, time, torch
visible = os.environ.get("CUDA_VISIBLE_DEVICES")
assert torch.cuda.is_available(), "CUDA is not available in this process"
assert torch.cuda.device_count() == 1, f"sees {torch.cuda.device_count()} GPUs, expected 1"
a = torch.randn(2048, 2048)
b = torch.randn(2048, 2048)
start = time.perf_counter()
on_gpu = (a.cuda() @ b.cuda()).cpu()
took = time.perf_counter() - start
assert torch.allclose(on_gpu, a @ b, rtol=1e-3, atol=1e-2), "GPU result differs from the CPU's"
print(f"OK {sys.argv[1]}: CUDA_VISIBLE_DEVICES={visible} device={torch.cuda.get_device_name(0)} "
      f"matmul {took * 1000:.1f} ms", flush=True)
time.sleep(float(sys.argv[2]))
"""


def main() -> int:
    devices = discover_gpus()
    if not devices:
        print("SKIP: no GPU found (NVML and nvidia-smi report none); nothing to prove here")
        return 0
    if importlib.util.find_spec("torch") is None:
        print("SKIP: PyTorch is not installed (pip install torch with CUDA support)")
        return 0
    print("GPUs:", ", ".join(f"{d.id} {d.name}" for d in devices))
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "work.py"
        script.write_text(WORK)
        with LocalRuntime(Path(folder) / "home") as runtime:
            argv = [sys.executable, str(script)]
            runtime.start_replicas(
                [ReplicaSpec("gpucheck", "replica", [*argv, "replica", "600"], gpus=1)]
            )
            run = runtime.launch_run(RunSpec("job", [*argv, "job", "0"], gpus=1, timeout_s=300))
            deadline = time.monotonic() + 120
            replica_log = ""
            while "OK replica" not in replica_log and time.monotonic() < deadline:
                time.sleep(0.5)
                replica_log = "\n".join(runtime.read_replica_log("gpucheck", "replica"))
            runtime.stop_replica("replica")  # with one GPU, the job waits for this one's
            status = run.wait(300)
            run_log = "\n".join(runtime.read_run_log("job"))
    print(replica_log)
    print(run_log)
    ok = "OK replica" in replica_log and "OK job" in run_log and status.value == "succeeded"
    if len(devices) == 1 and "waiting:" in run_log:
        print("(one GPU: the job waited for the replica's GPU, as it should)")
    print("PASS" if ok else "FAIL: see the logs above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
