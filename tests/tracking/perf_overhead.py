"""Added cost per call of ``@model_metrics`` (not a test: run it by hand).

    .venv/bin/python tests/tracking/perf_overhead.py

Uses the embedded SQLite backend in a temporary home, with the writer thread running, and prints
the best of seven runs of 20,000 calls per variant.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

os.environ["MODELYARD_HOME"] = tempfile.mkdtemp()

import modelyard
from modelyard.ids import new_prediction_uuid

N = 20_000


def plain(x: int) -> int:
    return x


@modelyard.model_metrics
def decorated(x: int) -> int:
    return x


@modelyard.model_metrics
def decorated_tracking(x: int) -> int:
    modelyard.track_metric("x", x)
    modelyard.track_metric("p", 0.5)
    return x


def per_call_us(fn: Callable[[int], Any]) -> float:
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        for i in range(N):
            fn(i)
        best = min(best, (time.perf_counter() - t) / N * 1e6)
        modelyard.flush()
    return best


def main() -> None:
    decorated(0)
    modelyard.flush()
    base = per_call_us(plain)
    for name, fn in (("decorated", decorated), ("decorated + 2 track_metric", decorated_tracking)):
        v = per_call_us(fn)
        print(f"{name:30s} {v:6.2f} us/call, overhead {v - base:6.2f} us")
    print(f"{'str(uuid.uuid4())':30s} {per_call_us(lambda i: str(uuid.uuid4())):6.2f} us")
    print(f"{'new_prediction_uuid()':30s} {per_call_us(lambda i: new_prediction_uuid()):6.2f} us")
    print("load average", os.getloadavg(), "cpus", os.cpu_count())


if __name__ == "__main__":
    main()
