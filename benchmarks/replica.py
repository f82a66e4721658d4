"""Replica throughput and latency by ``--concurrency``: a CPU-bound and a sleep-bound function.

Each configuration starts a real replica (``python -m modelyard.serving.replica``) on loopback and
drives it with an asyncio keep-alive HTTP/1.1 client (``CLIENTS`` connections, one request in
flight each) for ``--seconds``; repeated ``--repeat`` times, median reported. The generator shares
the machine's cores with the replica, so its CPU seconds are kept in the JSON next to the
replica's.

Functions:

- ``cpu``: scikit-learn ``LogisticRegression.predict_proba`` on one row of ``load_breast_cancer``
  (the model is fitted when the file is imported, as a deployed model would be loaded).
- ``sleep``: ``time.sleep(0.02)``, standing for a function that waits on I/O with the GIL released.
- ``echo``: returns its input; one client, concurrency 1: the replica's own overhead per request.
- ``batch``: the CPU-bound model with 64 clients, without and with adaptive batching
  (``predict_many`` takes the rows of up to 32 requests in one ``predict_proba``).

Baselines in the same run: the function called directly in this process in a loop (``cpu``,
``echo``), and the ideal ``concurrency / 0.02 s`` (``sleep``).

    .venv/bin/python benchmarks/replica.py [--seconds 3] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Figure, Report
from modelyard.runtime import free_port

MODELS = {
    "cpu.py": """
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, y = load_breast_cancer(return_X_y=True)
        MODEL = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)

        def predict(args):
            return {"probability": float(MODEL.predict_proba([args["row"]])[0, 1])}

        def predict_many(items):
            probabilities = MODEL.predict_proba([item["row"] for item in items])[:, 1]
            return [{"probability": p} for p in probabilities.tolist()]
    """,
    "sleep.py": """
        import time

        def predict(args):
            time.sleep(0.02)
            return {"slept": True}
    """,
    "echo.py": """
        def predict(args):
            return args
    """,
}

CLIENTS = 16


def _request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /invoke HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(port: int, request: bytes, until: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.perf_counter() < until:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"replica answered {head[:40]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            if b'"ok":true' not in body:
                raise RuntimeError(f"failed prediction: {body[:200]!r}")
            done += 1
    finally:
        writer.close()
    return done


async def _load(port: int, body: bytes, clients: int, seconds: float) -> tuple[int, list[float]]:
    request = _request(port, body)
    latencies: list[float] = []
    until = time.perf_counter() + seconds
    counts = await asyncio.gather(
        *(_client(port, request, until, latencies) for _ in range(clients))
    )
    return sum(counts), latencies


class Replica:
    def __init__(self, folder: Path, file: str, concurrency: int, *extra: str) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "modelyard.serving.replica", "--snapshot", str(folder)]
        argv += ["--file", file, "--function", "predict", "--port", str(self.port)]
        argv += ["--replica-id", "bench", "--concurrency", str(concurrency), *extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited: {self.process.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        self.ps = psutil.Process(self.process.pid)

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def run_config(
    report: Report,
    folder: Path,
    name: str,
    concurrency: int,
    clients: int,
    body: bytes,
    args: Any,
    *extra: str,
    label: str = "",
) -> tuple[Figure, Figure]:
    replica = Replica(folder, f"{name}.py", concurrency, *extra)
    label = label or f"{name} concurrency {concurrency}"
    rates: list[float] = []
    p50s: list[float] = []
    p99s: list[float] = []
    gen_cpu: list[float] = []
    rep_cpu: list[float] = []
    try:
        asyncio.run(_load(replica.port, body, clients, 0.5))  # warm up
        for _ in range(args.repeat):
            cpu0, rcpu0 = time.process_time(), replica.cpu_s()
            count, latencies = asyncio.run(_load(replica.port, body, clients, args.seconds))
            gen_cpu.append(time.process_time() - cpu0)
            rep_cpu.append(replica.cpu_s() - rcpu0)
            rates.append(count / args.seconds)
            q = statistics.quantiles(latencies, n=100)
            p50s.append(q[49] * 1000)
            p99s.append(q[98] * 1000)
    finally:
        replica.stop()
    note = (
        f"{clients} clients; generator CPU {statistics.median(gen_cpu):.2f} s, replica CPU "
        f"{statistics.median(rep_cpu):.2f} s per {args.seconds:g} s run"
    )
    rate = Figure(label, "req/s", rates, gen_cpu, note=note)
    p50 = Figure(f"{label} p50", "ms", p50s)
    p99 = Figure(f"{label} p99", "ms", p99s)
    report.add(rate)
    report.add(p50)
    report.add(p99)
    return rate, p50


def direct_rate(folder: Path, name: str, arg: Any, seconds: float, repeat: int) -> Figure:
    """Call the function in this process in a loop: the ceiling a replica can approach."""
    code = (
        "import sys, time, json, statistics; sys.path.insert(0, sys.argv[1]); "
        f"from {name} import predict; arg = json.loads(sys.argv[2]); rates = []\n"
        f"for _ in range({repeat}):\n"
        f"    n = 0; end = time.perf_counter() + {seconds}\n"
        "    while time.perf_counter() < end: predict(arg); n += 1\n"
        f"    rates.append(n / {seconds})\n"
        "print(json.dumps(rates))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder), orjson.dumps(arg).decode()],
        capture_output=True,
        text=True,
        check=True,
    )
    return Figure(f"{name} direct call, 1 thread", "calls/s", orjson.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 s runs, 1 repeat")
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--functions", default="cpu,batch,sleep,echo", help="which parts to run")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeat = 1.0, 1
    levels = [int(c) for c in args.concurrency.split(",")]
    parts = set(args.functions.split(","))
    report = Report("replica", {"seconds": args.seconds, "repeat": args.repeat, "levels": levels})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for file, text in MODELS.items():
            (folder / file).write_text(textwrap.dedent(text))
        from sklearn.datasets import load_breast_cancer

        row = [float(v) for v in load_breast_cancer().data[0]]
        cpu_body = orjson.dumps({"row": row})

        if "cpu" in parts:
            report.console.print("[bold]CPU-bound: LogisticRegression on one row[/]")
            direct = report.add(direct_rate(folder, "cpu", {"row": row}, args.seconds, args.repeat))
        for c in levels if "cpu" in parts else []:
            rate, _ = run_config(report, folder, "cpu", c, CLIENTS, cpu_body, args)
            rate.baseline = direct.name
            rate.ratio = rate.median / direct.median

        if "batch" in parts:
            report.console.print("[bold]Adaptive batching: the same model, 64 clients[/]")
            single, _ = run_config(
                report,
                folder,
                "cpu",
                8,
                64,
                cpu_body,
                args,
                "--batch-function",
                "none",
                label="cpu 64 clients, no batching",
            )
            batched, _ = run_config(
                report,
                folder,
                "cpu",
                8,
                64,
                cpu_body,
                args,
                "--batch-function",
                "predict_many",
                label="cpu 64 clients, predict_many batches",
            )
            batched.baseline, batched.ratio = single.name, batched.median / single.median
        if "sleep" in parts:
            report.console.print("[bold]Sleep-bound: time.sleep(0.02)[/]")
        for c in levels if "sleep" in parts else []:
            ideal = Figure(f"sleep ideal concurrency {c}", "req/s", [c / 0.02])
            rate, _ = run_config(report, folder, "sleep", c, CLIENTS, b"{}", args)
            rate.baseline, rate.ratio = ideal.name, rate.median / ideal.median
            report.figures.append(ideal)

        if "echo" in parts:
            report.console.print("[bold]Overhead: echo, one client, concurrency 1[/]")
            direct_echo = report.add(
                direct_rate(folder, "echo", {"tenure": 3}, args.seconds, args.repeat)
            )
            rate, p50 = run_config(report, folder, "echo", 1, 1, b'{"tenure": 3}', args)
            p50.note = f"direct call takes {1000 / direct_echo.median:.4f} ms"
    report.console.print(report.table())
    report.console.print(f"results: {report.write()}")
    report.console.print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
