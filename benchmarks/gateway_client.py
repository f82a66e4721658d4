"""Which HTTP client for the gateway -> replica hop: httpx vs aiohttp vs the hand-rolled one,
and which transport for it: TCP on 127.0.0.1 vs a Unix domain socket (``hand-rolled-unix``, the
same client and the same server app, the server listening on ``--uds``).

A uvicorn process (uvloop + httptools, like a replica) serves a tiny ASGI app that answers
``POST /invoke`` with a replica-shaped JSON answer. Each client sends ``--requests`` sequential
POSTs over keep-alive connections (one request at a time: the latency the predict path pays),
and again with ``--concurrency`` requests in flight (throughput). Each figure is repeated
``--repeat`` times; the median is printed with the client process's CPU time per request.

    .venv/bin/python benchmarks/gateway_client.py [--requests 3000] [--repeat 3]

aiohttp is not a Modelyard dependency: install it by hand to include it (it is skipped, with
the reason printed, when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from modelyard.serving.gateway.replica_client import ReplicaClient

APP = textwrap.dedent(
    """
    import orjson
    ANSWER = orjson.dumps({"ok": True, "output": {"p": 0.5},
        "record": {"predictionUuid": "x", "startTimeStampMs": 1, "endTimeStampMs": 2,
                   "metrics": {}},
        "timing": {"queue_ms": 0.0, "function_ms": 0.01, "batch_size": 1}})
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(ANSWER)).encode())]})
        await send({"type": "http.response.body", "body": ANSWER})
    """
)

BODY = b'{"tenure": 3, "plan": "basic", "charges": 42.5}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, folder: str, uds: str | None = None) -> subprocess.Popen[bytes]:
    with open(f"{folder}/bench_app.py", "w") as handle:
        handle.write(APP)
    where = ["--uds", uds] if uds is not None else ["--port", str(port)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_app:app",
            *where,
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=folder,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if uds is not None:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(uds)
            else:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the benchmark server did not start")


Post = Callable[[], Awaitable[Any]]


async def run_client(
    name: str, port: int, n: int, concurrency: int, uds: str = ""
) -> dict[str, float]:
    url = f"unix:{uds}" if name == "hand-rolled-unix" else f"http://127.0.0.1:{port}"
    closer: Callable[[], Awaitable[Any]]
    if name == "httpx":
        import httpx

        client = httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_keepalive_connections=64))

        async def post() -> Any:
            answer = await client.post("/invoke", content=BODY)
            return answer.content

        closer = client.aclose
    elif name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(base_url=url)

        async def post() -> Any:
            async with session.post("/invoke", data=BODY) as answer:
                return await answer.read()

        closer = session.close
    else:
        replica = ReplicaClient(url)

        async def post() -> Any:
            return await replica.post("/invoke", BODY)

        closer = replica.close
    for _ in range(200):  # warm up: connections, caches
        await post()
    latencies: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        await post()
        latencies.append(time.perf_counter() - t0)
    cpu_seq = time.process_time() - cpu0
    wall_seq = time.perf_counter() - wall0

    async def worker(count: int) -> None:
        for _ in range(count):
            await post()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    wall_conc = time.perf_counter() - wall0
    cpu_conc = time.process_time() - cpu0
    await closer()
    latencies.sort()
    return {
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "client_cpu_us": cpu_seq / n * 1e6,
        "seq_wall_us": wall_seq / n * 1e6,
        "rps_concurrent": (n // concurrency) * concurrency / wall_conc,
        "client_cpu_us_concurrent": cpu_conc / ((n // concurrency) * concurrency) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import tempfile

    clients = ["hand-rolled", "hand-rolled-unix", "httpx"]
    try:
        import aiohttp  # noqa: F401

        clients.append("aiohttp")
    except ImportError:
        print("aiohttp not installed: skipped (pip install aiohttp to include it)")
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        uds = f"{folder}/bench.sock"
        server = start_server(port, folder)
        unix_server = start_server(0, folder, uds)
        try:
            results: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
            for rep in range(args.repeat):
                # Interleaved, and the order rotated each round, so machine noise (and a slot's
                # position after another client) hits every client alike.
                shift = rep % len(clients)
                for name in clients[shift:] + clients[:shift]:
                    figures = uvloop.run(
                        run_client(name, port, args.requests, args.concurrency, uds)
                    )
                    results[name].append(figures)
        finally:
            for proc in (server, unix_server):
                proc.terminate()
                proc.wait()
    keys = list(next(iter(results.values()))[0])
    print(f"{'client':<18}" + "".join(f"{k:>26}" for k in keys))
    medians_of: dict[str, list[float]] = {}
    for name, runs in results.items():
        medians_of[name] = [statistics.median(run[k] for run in runs) for k in keys]
        print(f"{name:<18}" + "".join(f"{m:>26.1f}" for m in medians_of[name]))
    unix, tcp = medians_of["hand-rolled-unix"], medians_of["hand-rolled"]
    ratios = [u / t for u, t in zip(unix, tcp, strict=True)]
    print(f"{'unix / tcp':<18}" + "".join(f"{r:>26.2f}" for r in ratios))


if __name__ == "__main__":
    main()
