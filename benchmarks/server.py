"""Server overhead on the predict path: ``POST /api/v1/models/{name}/predict`` (and ``POST
/model``) through a real ``modelyard server`` process, against ``POST /invoke`` on the same
replica directly.

Starts ``modelyard server`` on a fresh home, deploys a small ``@model_metrics`` function (one
replica), then times one request at a time with one keep-alive ``httpx.Client`` per path:

- ``replica``: ``POST /invoke`` straight to the replica (the floor: HTTP + user code);
- ``predict``: the native route (auth by API key, body read, gateway, record to the writer);
- ``model``: the reference route with ``{"accessKey", "request"}`` (plus a JSON re-encode).

The difference of the p50s is what the server adds. Each figure is the median of ``--repeat``
runs; the client shares the two cores with the server and the replica, so its CPU time per request
is printed too. Writes JSON under ``benchmarks/results/``.

    .venv/bin/python benchmarks/server.py [--requests 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from _common import RESULTS, machine
from modelyard.runtime import free_port

MODEL = """
    import modelyard


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("tenure", args["tenure"])
        return {"churn": args["tenure"] > 3, "score": 0.25}
"""
INPUT = {"tenure": 5, "plan": "basic", "charges": 42.5}


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(home)
    argv = [sys.executable, "-m", "modelyard.server", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def timed(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], n: int) -> Any:
    for _ in range(200):  # warm up connections, caches, the replica's thread pool
        client.post(url, content=body, headers=headers).raise_for_status()
    samples = []
    cpu = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.post(url, content=body, headers=headers)
        samples.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.text}")
    cpu = time.process_time() - cpu
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
        "client_cpu_us": cpu / n * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, project = Path(tmp) / "home", Path(tmp) / "project"
        project.mkdir()
        (project / "predict.py").write_text(textwrap.dedent(MODEL))
        port = free_port()
        server = start_server(home, port)
        base = f"http://127.0.0.1:{port}"
        try:
            admin = (home / "admin.key").read_text().strip()
            auth = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
            deployed = httpx.post(
                f"{base}/api/v1/models/bench/deploy",
                json={"project": str(project), "example": INPUT},
                headers=auth,
                timeout=300,
            )
            deployed.raise_for_status()
            access_key = deployed.json()["access_key"]
            status = httpx.get(f"{base}/api/v1/models/bench", headers=auth).json()
            replica_port = status["replicas"][0]["state"]["port"]
            body = orjson.dumps(INPUT)
            paths = {
                "replica": (f"http://127.0.0.1:{replica_port}/invoke", body, {}),
                "predict": (f"{base}/api/v1/models/bench/predict", body, auth),
                "model": (
                    f"{base}/model",
                    orjson.dumps({"accessKey": access_key, "request": INPUT}),
                    auth,
                ),
            }
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
            for _ in range(args.repeat):
                for name, (url, payload, headers) in paths.items():
                    with httpx.Client(timeout=30) as client:
                        runs[name].append(timed(client, url, payload, headers, args.requests))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    keys = ["p50_us", "p99_us", "client_cpu_us"]
    print(f"{'path':<10}" + "".join(f"{k:>16}" for k in keys))
    medians = {}
    for name, results in runs.items():
        medians[name] = {k: statistics.median(r[k] for r in results) for k in keys}
        print(f"{name:<10}" + "".join(f"{medians[name][k]:>16.1f}" for k in keys))
    for name in ("predict", "model"):
        extra = medians[name]["p50_us"] - medians["replica"]["p50_us"]
        print(f"server overhead of {name!r} at p50 over the replica: {extra:.0f} us")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"server-{stamp}.json"
    out.write_bytes(
        orjson.dumps(
            {
                "benchmark": "server",
                "created": stamp,
                "machine": machine(),
                "params": vars(args),
                "runs": runs,
                "medians": medians,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
