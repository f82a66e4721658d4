"""What the prediction journal costs on the predict path, against the same run without it.

Two measurements, each variant interleaved with the others and repeated (medians of
``--repeat`` runs, the machine being shared):

- ``submit``: ``BufferedWriter.submit`` of one prediction record into a SQLite store, µs per
  call (``--records`` calls per run): no journal (the baseline), a journal fsynced every 20 ms
  (the default), a journal fsynced inside every append (``fsync_interval_ms=0``);
- ``gateway``: ``Gateway.invoke`` through one real replica process (the one of
  ``benchmarks/gateway.py``), p50 at one request at a time and requests/s with 8 in flight,
  without and with the journal (fsync every 20 ms).

    .venv/bin/python benchmarks/journal.py [--records 50000] [--requests 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import uvloop

sys.path.insert(0, str(Path(__file__).parent))
from gateway import BODY, MODEL, free_port, start_replica
from modelyard.serving.gateway import DeploymentPool, Gateway, ReplicaEndpoint
from modelyard.store import BufferedWriter, Identity, Journal, Prediction
from modelyard.store.sqlite import SQLiteStore

T = TypeVar("T")
WHO = Identity(*(f"crn:modelyard:{k}/{uuid.uuid4()}" for k in ("model", "build", "deployment")))

# variant name -> journal fsync interval in ms (None: no journal)
SUBMIT_VARIANTS: dict[str, int | None] = {"none": None, "fsync 20ms": 20, "fsync each": 0}
GATEWAY_VARIANTS: dict[str, int | None] = {"none": None, "fsync 20ms": 20}


def with_writer(
    tmp: Path, store: SQLiteStore, fsync_ms: int | None, body: Callable[[BufferedWriter], T]
) -> T:
    folder = tmp / f"journal-{uuid.uuid4()}"
    journal = None if fsync_ms is None else Journal(folder, fsync_interval_ms=fsync_ms)
    writer = BufferedWriter(store, journal=journal)
    try:
        return body(writer)
    finally:
        writer.close()
        if journal is not None:
            journal.close()


def time_submit(writer: BufferedWriter, n: int) -> tuple[float, float]:
    """(wall µs per submit, CPU µs per record of the whole process until committed) for ``n``
    records (the writer commits them meanwhile, as in a server)."""
    records = [
        Prediction(str(uuid.uuid4()), WHO, 1, 2, {"tenure": i, "churn": i % 2 == 0})
        for i in range(n)
    ]
    cpu = time.process_time()
    t0 = time.perf_counter()
    for record in records:
        writer.submit(record)
    elapsed = time.perf_counter() - t0
    writer.flush()
    return elapsed / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def time_gateway(writer: BufferedWriter, port: int, n: int) -> tuple[float, float, float]:
    """(p50 µs at one in flight, requests/s at 8 in flight, CPU µs per request of this process
    at 8 in flight, records committed) of ``Gateway.invoke``."""
    gateway = Gateway(writer)
    pool = DeploymentPool(WHO)
    pool.add_endpoint(ReplicaEndpoint("bench", f"http://127.0.0.1:{port}", capacity=8))
    gateway.set_pool("bench", pool)
    for _ in range(200):
        await gateway.invoke("bench", BODY)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = await gateway.invoke("bench", BODY)
        samples.append(time.perf_counter() - t0)
        assert result.http_status == 200, result.envelope
    samples.sort()
    left = n

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await gateway.invoke("bench", BODY)

    cpu = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(8)))
    rate = n / (time.perf_counter() - t0)
    await asyncio.to_thread(writer.flush)
    cpu_us = (time.process_time() - cpu) / n * 1e6
    await gateway.close()
    return samples[n // 2] * 1e6, rate, cpu_us


def gateway_run(
    tmp: Path, store: SQLiteStore, fsync_ms: int | None, port: int, n: int
) -> tuple[float, float, float]:
    def body(writer: BufferedWriter) -> tuple[float, float, float]:
        return uvloop.run(time_gateway(writer, port, n))

    return with_writer(tmp, store, fsync_ms, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    submit: dict[str, list[tuple[float, float]]] = {name: [] for name in SUBMIT_VARIANTS}
    gateway: dict[str, list[tuple[float, float, float]]] = {name: [] for name in GATEWAY_VARIANTS}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        project = tmp / "project"
        project.mkdir()
        (project / "predict.py").write_text(textwrap.dedent(MODEL))
        port = free_port()
        replica = start_replica(project, port)
        store = SQLiteStore(tmp / "metrics.db")
        try:
            for _ in range(args.repeat):
                for name, fsync_ms in SUBMIT_VARIANTS.items():
                    one = with_writer(tmp, store, fsync_ms, lambda w: time_submit(w, args.records))
                    submit[name].append(one)
                for name, fsync_ms in GATEWAY_VARIANTS.items():
                    gateway[name].append(gateway_run(tmp, store, fsync_ms, port, args.requests))
        finally:
            replica.terminate()
            replica.wait()
            store.close()

    def median(runs: list[Any], i: int) -> float:
        return float(statistics.median(r[i] for r in runs))

    wall, cpu = median(submit["none"], 0), median(submit["none"], 1)
    print(f"BufferedWriter.submit (median of {args.repeat}; ratio to no journal)")
    for name, by_submit in submit.items():
        a, b = median(by_submit, 0), median(by_submit, 1)
        print(
            f"  {name:<12} wall {a:>8.2f} µs/record ({a / wall:.2f}x)   "
            f"CPU until committed {b:>7.2f} µs/record ({b / cpu:.2f}x)"
        )
    base = [median(gateway["none"], i) for i in range(3)]
    print(f"Gateway.invoke through one replica (median of {args.repeat})")
    for name, by_call in gateway.items():
        a, b, c = (median(by_call, i) for i in range(3))
        print(
            f"  {name:<12} c=1 p50 {a:>5.0f} µs ({a - base[0]:+.0f} µs)   "
            f"c=8 {b:>5.0f} req/s ({b / base[1]:.2f}x), "
            f"CPU {c:>5.0f} µs/request ({c / base[2]:.2f}x)"
        )


if __name__ == "__main__":
    main()
