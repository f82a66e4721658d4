"""Experiment start to first metric: an experiment run on a real ``modelyard server`` over
loopback, against running the same script directly with ``python``, in the same benchmark run.

The script imports ``modelyard``, tracks one metric at once (printing a marker line right after
the call returns), then tracks 20 more and keeps a 1 MB file with ``track_file``. Timed:

- ``direct: start to first metric`` (baseline): ``python train.py`` as a subprocess, from
  ``Popen`` to the marker line on its stdout (``track_metric`` records nothing there: no run);
- ``direct: whole script``: from ``Popen`` to its exit;
- ``experiment: start to first metric visible``: from ``POST /api/v1/experiments`` (the project
  uploaded once before, so the upload is not in it) until ``GET /api/v1/experiments/{uuid}``
  shows the metric (polled every 10 ms): the server's snapshot, the writable working folder,
  the run's key, the process start, and the metric's trip back through the server;
- ``experiment: start to run recorded``: until the run is final with its file kept;
- ``experiment, first (cold)``: the first run of the server, once, not in the medians.

Medians of ``--repeat`` (3) runs, printed as ratios to the direct run (the run recorded against
the whole direct script, the others against its first metric); JSON under
``benchmarks/results/``.

    .venv/bin/python benchmarks/experiments.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from _common import Figure, Report, Timer
from modelyard.cli.uploading import upload_folder
from modelyard.client import Client
from modelyard.runtime import free_port
from server import start_server

TRAIN = """
import os
from pathlib import Path
import modelyard

modelyard.track_metric("first", 1.0)
print("FIRST", flush=True)
for step in range(20):
    modelyard.track_metric("loss", 1.0 / (step + 1))
Path("model.bin").write_bytes(os.urandom(1024 * 1024))
modelyard.track_file("model.bin")
"""


def direct(project: Path) -> tuple[Timer, Timer]:
    """``python train.py`` in a scratch copy: (start to first metric, whole script)."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(project / "train.py")],
            cwd=scratch,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "FIRST":
                break
        first = time.perf_counter() - t0
        proc.wait(60)
        whole = time.perf_counter() - t0
    return Timer(first, 0.0), Timer(whole, 0.0)


def experiment(http: httpx.Client, upload: str) -> tuple[Timer, Timer]:
    """One experiment: (start to first metric visible, start to run recorded)."""
    t0 = time.perf_counter()
    answer = http.post("/api/v1/experiments", json={"script": "train.py", "upload": upload})
    answer.raise_for_status()
    uuid = answer.json()["uuid"]
    first: float | None = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        shown: dict[str, Any] = http.get(f"/api/v1/experiments/{uuid}").json()
        if first is None and "first" in shown["metrics"]:
            first = time.perf_counter() - t0
        if shown["state"] not in ("queued", "running"):
            break
        time.sleep(0.01)
    whole = time.perf_counter() - t0
    if shown["state"] != "succeeded" or first is None or len(shown["files"]) != 1:
        logs = http.get(f"/api/v1/experiments/{uuid}/logs").text
        raise SystemExit(f"experiment {uuid} ended {shown['state']}: {logs}")
    return Timer(first, 0.0), Timer(whole, 0.0)


def run(args: argparse.Namespace, report: Report, work: Path) -> None:
    project = work / "project"
    project.mkdir()
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    home = work / "home"
    port = free_port()
    server = start_server(home, port)
    try:
        url = f"http://127.0.0.1:{port}"
        admin = (home / "admin.key").read_text().strip()
        upload = upload_folder(Client(url, admin), project, None).id
        headers = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            cold_first, _ = experiment(http, upload)
            timers: dict[str, list[Timer]] = {"d1": [], "dw": [], "e1": [], "ew": []}
            for _ in range(args.repeat):
                d1, dw = direct(project)
                e1, ew = experiment(http, upload)
                timers["d1"].append(d1)
                timers["dw"].append(dw)
                timers["e1"].append(e1)
                timers["ew"].append(ew)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    base = report.add(Figure.seconds("direct: start to first metric (baseline)", timers["d1"]))
    whole = report.add(Figure.seconds("direct: whole script", timers["dw"]), base)
    report.add(
        Figure.seconds("experiment: start to first metric visible", timers["e1"], "via REST"),
        base,
    )
    report.add(
        Figure.seconds("experiment: start to run recorded", timers["ew"], "1 MB file kept"),
        whole,
    )
    report.add(Figure.seconds("experiment, first (cold)", [cold_first], "once"), base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report = Report("experiments", {"repeat": args.repeat})
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as work:
        run(args, report, Path(work))
    report.console.print(report.table())
    report.console.print(f"wrote {report.write()}")


if __name__ == "__main__":
    main()
