"""Gateway + replica overhead over calling the user function directly (budget: < 1 ms at p50).

Starts one real replica process (``python -m modelyard.serving.replica``, uvicorn + uvloop +
httptools) of a small ``@model_metrics`` function, then times, one request at a time:

- ``direct``: the function called in this process under ``tracking.capture()`` (what the replica
  itself does around each call, minus HTTP);
- ``replica``: ``POST /invoke`` straight to the replica with the gateway's HTTP client;
- ``gateway``: ``Gateway.invoke`` (routing, envelope, record to a ``BufferedWriter`` on a SQLite
  store, Prometheus metrics) through the same replica.

The HTTP hop from the caller to the server that hosts the gateway is not included: that belongs
to the server. Each figure is the median of ``--repeat`` runs; the generator shares the two cores
with the replica, so the client's CPU time per request is printed too.

    .venv/bin/python benchmarks/gateway.py [--requests 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvloop

from modelyard import tracking
from modelyard.serving.gateway import DeploymentPool, Gateway, ReplicaEndpoint
from modelyard.serving.gateway.replica_client import ReplicaClient
from modelyard.store import BufferedWriter, Identity
from modelyard.store.sqlite import SQLiteStore

MODEL = """
    import modelyard


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("tenure", args["tenure"])
        return {"churn": args["tenure"] > 3, "score": 0.25}
"""
BODY = b'{"tenure": 5, "plan": "basic", "charges": 42.5}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_replica(folder: Path, port: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "modelyard.serving.replica", "--snapshot", str(folder)]
    argv += ["--file", "predict.py", "--function", "predict", "--port", str(port)]
    argv += ["--replica-id", "bench", "--batch-function", "none", "--concurrency", "4"]
    env = {**os.environ, "MODELYARD_HOME": str(folder.parent / "home")}
    proc = subprocess.Popen(argv, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the replica did not become healthy")


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return samples[len(samples) // 2] * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def time_direct(folder: Path, n: int) -> dict[str, float]:
    spec = importlib.util.spec_from_file_location("bench_predict", folder / "predict.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = {"tenure": 5, "plan": "basic", "charges": 42.5}
    samples = []
    cpu = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        with tracking.capture():
            module.predict(args)
        samples.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu
    p50, p99 = percentiles(samples)
    return {"p50_us": p50, "p99_us": p99, "client_cpu_us": cpu / n * 1e6}


async def time_async(kind: str, port: int, store: SQLiteStore, n: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}"
    gateway: Gateway | None = None
    writer: BufferedWriter | None = None
    client: ReplicaClient | None = None
    if kind == "gateway":
        writer = BufferedWriter(store)
        gateway = Gateway(writer)
        ident = Identity(
            *(f"crn:modelyard:{k}/{uuid.uuid4()}" for k in ("model", "build", "deployment"))
        )
        pool = DeploymentPool(ident)
        pool.add_endpoint(ReplicaEndpoint("bench", url, capacity=4))
        gateway.set_pool("bench", pool)

        async def call() -> Any:
            assert gateway is not None
            return await gateway.invoke("bench", BODY)
    else:
        client = ReplicaClient(url)

        async def call() -> Any:
            assert client is not None
            return await client.post("/invoke", BODY)

    for _ in range(200):
        await call()
    samples = []
    cpu = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t0)
    cpu = time.process_time() - cpu
    if gateway is not None and writer is not None:
        await gateway.close()
        writer.close()
    if client is not None:
        await client.close()
    p50, p99 = percentiles(samples)
    return {"p50_us": p50, "p99_us": p99, "client_cpu_us": cpu / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "project"
        folder.mkdir()
        (folder / "predict.py").write_text(textwrap.dedent(MODEL))
        port = free_port()
        replica = start_replica(folder, port)
        store = SQLiteStore(Path(tmp) / "metrics.db")
        runs: dict[str, list[dict[str, float]]] = {"direct": [], "replica": [], "gateway": []}
        try:
            for _ in range(args.repeat):
                runs["direct"].append(time_direct(folder, args.requests))
                for kind in ("replica", "gateway"):
                    runs[kind].append(uvloop.run(time_async(kind, port, store, args.requests)))
        finally:
            replica.terminate()
            replica.wait()
            store.close()
    keys = ["p50_us", "p99_us", "client_cpu_us"]
    print(f"{'path':<10}" + "".join(f"{k:>16}" for k in keys))
    medians = {}
    for name, results in runs.items():
        medians[name] = {k: statistics.median(r[k] for r in results) for k in keys}
        print(f"{name:<10}" + "".join(f"{medians[name][k]:>16.1f}" for k in keys))
    overhead = medians["gateway"]["p50_us"] - medians["direct"]["p50_us"]
    print(f"gateway + replica overhead at p50: {overhead:.0f} us (budget 1000 us)")


if __name__ == "__main__":
    main()
