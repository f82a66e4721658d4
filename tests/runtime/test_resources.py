"""Local resources: CPU limits (affinity here; cgroup v2 against a fake cgroup folder), memory
limits of runs, and GPUs handed out exclusively.

This machine has no GPU: every GPU test injects a fake device list at the discovery boundary
(``GpuPool(devices=...)``) and checks what real processes receive in ``CUDA_VISIBLE_DEVICES``.
``benchmarks/gpu_check.py`` is what proves it on a machine with a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput
from modelyard.runtime import LocalRuntime, ReplicaSpec, RunSpec
from modelyard.runtime.resources import (
    CpuLimiter,
    GpuDevice,
    GpuPool,
    GpusBusy,
    LocalResources,
    find_cgroup_v2,
    parse_nvidia_smi,
)

from .conftest import FAST, wait_until

FAKE_GPUS = [GpuDevice("0", "Tesla T4", 16 * 1024**3), GpuDevice("1", "NVIDIA A100", 40 * 1024**3)]

SHOW_GPUS = "import os; print('GPUS=' + repr(os.environ.get('CUDA_VISIBLE_DEVICES')))"


def _runtime(home: Path, devices: list[GpuDevice] | None = None) -> LocalRuntime:
    resources = LocalResources(CpuLimiter.detect(), GpuPool(devices or []))
    return LocalRuntime(home, config=FAST, resources=resources)


def _log(runtime: LocalRuntime, run_id: str) -> str:
    return "\n".join(runtime.read_run_log(run_id))


# -- GPUs: the pool ---------------------------------------------------------------------------


def test_gpus_are_handed_out_exclusively_and_a_busy_ask_names_who_holds_them() -> None:
    pool = GpuPool(FAKE_GPUS)
    assert pool.acquire("replica d/r1", 1) == ("0",)
    assert pool.acquire("replica d/r1", 1) == ("0",)  # asking again: what it holds
    assert pool.acquire("run a", 1, "a100") == ("1",)
    with pytest.raises(GpusBusy) as busy:
        pool.acquire("run b", 1)
    text = busy.value.message
    assert "0 of 2 are free" in text
    assert "GPU 0 (Tesla T4) is held by replica d/r1" in text
    assert "GPU 1 (NVIDIA A100) is held by run a" in text
    pool.release("replica d/r1")
    assert pool.acquire("run b", 1) == ("0",)
    assert pool.holders() == {"0": "run b", "1": "run a"}


def test_an_ask_the_machine_never_could_meet_is_refused() -> None:
    pool = GpuPool(FAKE_GPUS)
    with pytest.raises(InvalidInput, match=r"asks for 3 GPUs but this machine has 2 such"):
        pool.acquire("run a", 3)
    with pytest.raises(InvalidInput, match=r"of type 'H100' but this machine has 0 such"):
        pool.check("run a", 1, "H100")
    with pytest.raises(InvalidInput, match=r"has 0 such \(all GPUs: none\)"):
        GpuPool([]).check("run a", 1)
    assert pool.holders() == {}  # nothing half-taken


def test_visible_devices_hide_gpus_from_processes_that_asked_for_none() -> None:
    assert GpuPool(FAKE_GPUS).visible_env(()) == {"CUDA_VISIBLE_DEVICES": ""}
    assert GpuPool(FAKE_GPUS).visible_env(("0", "1")) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert GpuPool([]).visible_env(()) == {}  # no GPU: the variable is left alone


def test_nvidia_smi_output_is_parsed() -> None:
    out = "0, GPU-aaa, Tesla T4, 15360\n1, GPU-bbb, NVIDIA A100-SXM4-40GB, 40960\nbad line\n"
    found = parse_nvidia_smi(out)
    assert [(d.id, d.name, d.uuid) for d in found] == [
        ("0", "Tesla T4", "GPU-aaa"),
        ("1", "NVIDIA A100-SXM4-40GB", "GPU-bbb"),
    ]
    assert found[0].memory_bytes == 15360 * 1024 * 1024


# -- CPU limits ---------------------------------------------------------------------------------


def test_this_machine_limits_cpus_by_affinity_when_no_cgroup_v2_delegates_cpu() -> None:
    folder, why = find_cgroup_v2()
    limiter = CpuLimiter.detect()
    assert limiter.method == ("cgroup" if folder is not None else "affinity"), why
    assert limiter.describe()


def test_affinity_pins_whole_cpus_least_used_first() -> None:
    limiter = CpuLimiter.detect(cgroup=(None, "test: no cgroup"))
    procs = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        first = limiter.apply("a", procs[0].pid, 0.5)
        assert first["method"] == "affinity" and len(first["cpus"]) == 1  # type: ignore[arg-type]
        assert os.sched_getaffinity(procs[0].pid) == set(first["cpus"])  # type: ignore[call-overload]
        second = limiter.apply("b", procs[1].pid, 1)
        if len(limiter.cpus) > 1:  # the least used CPU: not the one "a" holds
            assert second["cpus"] != first["cpus"]
        assert limiter.apply("c", procs[1].pid, None) == {}  # no limit asked: nothing done
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    limiter.release("a")
    assert limiter.pinned("a") == ()


def test_cgroup_v2_limits_are_written_where_a_writable_cgroup_delegates_cpu(
    tmp_path: Path,
) -> None:
    # A fake cgroup v2 tree: the files the kernel would offer, in a folder we may write.
    mount = tmp_path / "cgroup"
    own = mount / "service"
    own.mkdir(parents=True)
    (own / "cgroup.subtree_control").write_text("cpu memory pids\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"30 25 0:26 / {mount} rw - cgroup2 cgroup2 rw\n")
    proc_cgroup = tmp_path / "cgroup-of-self"
    proc_cgroup.write_text("0::/service\n")
    found = find_cgroup_v2(mountinfo, proc_cgroup)
    assert found[0] == own
    limiter = CpuLimiter.detect(cgroup=found)
    assert limiter.method == "cgroup" and limiter.memory
    applied = limiter.apply("dep-r1", 4242, 1.5, 256 * 1024**2)
    group = own / "modelyard-dep-r1"
    assert (group / "cpu.max").read_text() == "150000 100000\n"
    assert (group / "memory.max").read_text() == f"{256 * 1024**2}\n"
    assert (group / "cgroup.procs").read_text() == "4242\n"
    assert applied["method"] == "cgroup"
    # Without cpu delegated, or without a cgroup v2 mount: the affinity fallback, with the reason.
    (own / "cgroup.subtree_control").write_text("pids\n")
    assert find_cgroup_v2(mountinfo, proc_cgroup)[0] is None
    assert "does not delegate the cpu controller" in find_cgroup_v2(mountinfo, proc_cgroup)[1]
    mountinfo.write_text("30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n")
    assert "no cgroup v2" in find_cgroup_v2(mountinfo, proc_cgroup)[1]


# -- the local runtime: runs --------------------------------------------------------------------


def test_runs_get_their_gpus_and_a_second_one_waits_until_they_are_free(tmp_path: Path) -> None:
    with _runtime(tmp_path, FAKE_GPUS) as runtime:
        hold = f"import time; {SHOW_GPUS}; time.sleep(1.0)"
        first = runtime.launch_run(RunSpec("first", [sys.executable, "-c", hold], gpus=2))
        plain = runtime.launch_run(RunSpec("plain", [sys.executable, "-c", SHOW_GPUS]))
        second = runtime.launch_run(RunSpec("second", [sys.executable, "-c", SHOW_GPUS], gpus=1))
        waiting = runtime.waiting()
        assert [(p.kind, p.name) for p in waiting] == [("run", "second")]
        assert "held by run first" in (waiting[0].reason or "")
        node = runtime.nodes()[0]
        assert {g.id: g.held_by for g in node.gpus} == {"0": "run first", "1": "run first"}
        assert ("run", "first", ("0", "1")) in [(p.kind, p.name, p.gpu_ids) for p in node.placed]
        assert first.wait(30).value == "succeeded" and plain.wait(30).value == "succeeded"
        assert second.wait(30).value == "succeeded"
        assert "GPUS='0,1'" in _log(runtime, "first")
        assert "GPUS=''" in _log(runtime, "plain")  # asked for none: sees none
        log = _log(runtime, "second")
        assert "waiting: run second asks for 1 GPU but 0 of 2 are free" in log
        assert "GPUS='0'" in log
        assert runtime.waiting() == [] and runtime.resources.gpus.holders() == {}
        with pytest.raises(InvalidInput, match="asks for 4 GPUs but this machine has 2"):
            runtime.launch_run(RunSpec("greedy", [sys.executable, "-c", "pass"], gpus=4))


def test_a_waiting_run_can_be_cancelled_and_times_out(tmp_path: Path) -> None:
    with _runtime(tmp_path, FAKE_GPUS[:1]) as runtime:
        holder = runtime.launch_run(
            RunSpec("holder", [sys.executable, "-c", "import time; time.sleep(30)"], gpus=1)
        )
        waits = runtime.launch_run(RunSpec("waits", [sys.executable, "-c", "pass"], gpus=1))
        late = runtime.launch_run(
            RunSpec("late", [sys.executable, "-c", "pass"], gpus=1, timeout_s=0.5)
        )
        assert waits.cancel().value == "cancelled" and waits.exit_code is None
        assert late.wait(10).value == "timed_out"
        assert holder.cancel().value == "cancelled"
        assert runtime.resources.gpus.holders() == {}


def test_a_run_is_limited_to_its_cpus_and_killed_over_its_memory(tmp_path: Path) -> None:
    with _runtime(tmp_path) as runtime:
        show = (
            "import os, time; time.sleep(0.3); print('CPUS=' + str(len(os.sched_getaffinity(0))))"
        )
        limited = runtime.launch_run(RunSpec("cpu", [sys.executable, "-c", show], cpus=1))
        assert limited.wait(30).value == "succeeded"
        log = _log(runtime, "cpu")
        if runtime.resources.cpu.method == "affinity":
            assert "CPUS=1" in log and "'method': 'affinity'" in log
        grow = "import time; b = bytearray(300 * 1024 * 1024); time.sleep(30)"
        hungry = runtime.launch_run(
            RunSpec("hungry", [sys.executable, "-c", grow], memory_bytes=100 * 1024 * 1024)
        )
        started = time.monotonic()
        assert hungry.wait(30).value == "failed"
        assert time.monotonic() - started < 10
        assert "killed: resident memory" in _log(runtime, "hungry")


# -- the local runtime: replicas ----------------------------------------------------------------


def _replica(replica_id: str, tmp_path: Path, gpus: int, cpus: float | None = None) -> ReplicaSpec:
    out = tmp_path / f"{replica_id}.out"
    code = (
        "import os, time\n"
        f"open({str(out)!r}, 'w').write(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))\n"
        "time.sleep(60)\n"
    )
    return ReplicaSpec("dep", replica_id, [sys.executable, "-c", code], gpus=gpus, cpus=cpus)


def test_replicas_hold_gpus_while_they_run_and_a_third_waits(tmp_path: Path) -> None:
    with _runtime(tmp_path, FAKE_GPUS) as runtime:
        runtime.start_replicas([_replica(f"r{i}", tmp_path, 1, cpus=0.5) for i in (1, 2, 3)])
        wait_until(lambda: (tmp_path / "r1.out").exists() and (tmp_path / "r2.out").exists())
        seen = {(tmp_path / f"r{i}.out").read_text() for i in (1, 2)}
        assert seen == {"0", "1"}  # one each, never shared
        waiting = runtime.waiting()
        assert [p.name for p in waiting] == ["r3"]
        assert "replica dep/r3 asks for 1 GPU but 0 of 2 are free" in (waiting[0].reason or "")
        node = runtime.nodes()[0]
        assert node.cpu_limit == runtime.resources.cpu.method
        assert sorted(p.name for p in node.placed) == ["r1", "r2"]
        assert not (tmp_path / "r3.out").exists()
        freed = runtime.replica("r1").gpu_ids
        runtime.stop_replica("r1", grace_s=0.5)
        wait_until(lambda: (tmp_path / "r3.out").exists())
        wait_until(lambda: (tmp_path / "r3.out").read_text() != "")
        assert (tmp_path / "r3.out").read_text() == ",".join(freed)
        assert runtime.waiting() == []
        with pytest.raises(InvalidInput, match="replica r9 asks for 3 GPUs"):
            runtime.start_replicas([_replica("r9", tmp_path, 3)])


def test_jobs_and_models_carry_their_resources_to_the_runtime() -> None:
    from modelyard.registry import ModelSettings
    from modelyard.specs.deploy import DeploySpec
    from modelyard.specs.job import JobSpec

    spec = JobSpec(
        name="train", project="/srv/p", script="t.py", manual=True, cpus=2, memory="1G", gpus=1
    )
    assert spec.resources == {"cpus": 2.0, "memory": 1024**3, "gpus": 1, "accelerator": None}
    assert spec.changed({"gpus": 0, "cpus": None, "memory": None}).resources == {}
    with pytest.raises(InvalidInput, match="gpus=-1 is not accepted"):
        JobSpec(name="t", project="/srv/p", script="t.py", manual=True, gpus=-1)
    with pytest.raises(InvalidInput, match="accelerator='a b'"):
        JobSpec(name="t", project="/srv/p", script="t.py", manual=True, accelerator="a b")
    deploy = DeploySpec(upload="u", gpus=1, accelerator="T4", settings={"debug": True})
    assert deploy.model_settings == {"debug": True, "gpus": 1, "accelerator": "T4"}
    assert DeploySpec(upload="u").model_settings == {}  # no --gpus: the model's setting stays
    settings = ModelSettings().replace(**deploy.model_settings)
    assert ModelSettings.from_json(settings.to_json()).gpus == 1
    with pytest.raises(InvalidInput, match="gpus=65"):
        ModelSettings(gpus=65)
