"""``read_metrics_frame`` against a raw ``sqlite3`` SELECT ... fetchall of the same rows.

Not a test: run it by hand (loading 1M records takes about half a minute)::

    .venv/bin/python tests/tracking/perf_read_frame.py [records] [home]

Prints median wall and CPU seconds of three runs of: the raw SELECT (the baseline), the store's
``scan`` alone, and ``read_metrics_frame``; CPU time is the fairer figure on a shared machine.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Callable

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
HOME = sys.argv[2] if len(sys.argv) > 2 else f"/tmp/modelyard-perf-frame-{N}"
os.environ["MODELYARD_HOME"] = HOME

import modelyard  # noqa: E402
from modelyard.store.base import Identity, Prediction, Query  # noqa: E402
from modelyard.store.open import open_store  # noqa: E402
from modelyard.tracking import backends  # noqa: E402

IDENT = Identity(
    "crn:modelyard:model/perf", "crn:modelyard:build/perf", "crn:modelyard:deployment/perf"
)
DB = os.path.join(HOME, "modelyard.db")


def load() -> None:
    os.makedirs(HOME, exist_ok=True)
    store = open_store()
    rnd = random.Random(1)
    t = time.perf_counter()
    for start in range(0, N, 20_000):
        store.write_predictions(
            [
                Prediction(
                    str(uuid.uuid4()),
                    IDENT,
                    1_700_000_000_000 + i,
                    1_700_000_000_005 + i,
                    {f"m{k}": rnd.random() for k in range(10)},
                )
                for i in range(start, min(N, start + 20_000))
            ]
        )
    store.close()
    print(f"loaded {N} records in {time.perf_counter() - t:.1f}s")


def raw() -> int:
    con = sqlite3.connect(DB)
    (dep,) = con.execute(
        "SELECT id FROM identities WHERE deployment_crn = ?", (IDENT.deployment_crn,)
    ).fetchone()
    rows = con.execute(
        "SELECT deployment_id, start_ms, uuid, end_ms, metrics, delayed FROM predictions "
        "WHERE deployment_id = ? AND start_ms >= 0 ORDER BY start_ms, uuid",
        (dep,),
    ).fetchall()
    con.close()
    return len(rows)


def scan() -> int:
    query = Query(deployment_crn=IDENT.deployment_crn)
    return sum(len(b) for b in backends.select().scan(query, 100_000))


def frame() -> int:
    return len(modelyard.read_metrics_frame(IDENT.deployment_crn))


def main() -> None:
    if not os.path.exists(DB):
        load()
    results: dict[str, tuple[float, float]] = {}
    steps: list[tuple[str, Callable[[], int]]] = [
        ("raw SELECT fetchall", raw),
        ("store.scan", scan),
        ("read_metrics_frame", frame),
    ]
    for name, fn in steps:
        walls, cpus = [], []
        for _ in range(3):
            w, c = time.perf_counter(), time.process_time()
            rows = fn()
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
        results[name] = (statistics.median(walls), statistics.median(cpus))
        print(f"{name:22s} {rows} rows  wall {results[name][0]:.2f}s  cpu {results[name][1]:.2f}s")
    base = results["raw SELECT fetchall"]
    mine = results["read_metrics_frame"]
    print(f"frame / raw: wall {mine[0] / base[0]:.2f}x, cpu {mine[1] / base[1]:.2f}x")
    print("load average", os.getloadavg())


if __name__ == "__main__":
    main()
