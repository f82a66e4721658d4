"""Import-served models against their library called in-process: the same iris pipeline
(StandardScaler + LogisticRegression) served by Modelyard from an ONNX file (onnxruntime,
batching on) and from a .skops file (scikit-learn, batching on), compared with ``predict`` of
the library itself in this process (onnxruntime ``InferenceSession.run`` and scikit-learn
``predict`` + ``predict_proba`` on one row, the work one request asks for).

Figures: req/s at concurrency 8 (served: the load generator of ``serving.py`` against
``POST /model``; in-process: 8 threads calling the library) and p50 latency at concurrency 1.

    .venv/bin/python benchmarks/imports.py             # 10 s runs
    .venv/bin/python benchmarks/imports.py --quick     # 2 s runs
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from _common import Figure, Report
from serving import Load, Modelyard, Target, ensure_wrk


def _models(folder: Path) -> tuple[Any, list[float]]:
    import skops.io
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x, y)
    (folder / "iris.onnx").write_bytes(to_onnx(pipe, x[:1].astype(np.float32)).SerializeToString())
    skops.io.dump(pipe, folder / "iris.skops")
    return pipe, [float(v) for v in x[120]]


def in_process(call: Callable[[], Any], threads: int, seconds: float) -> tuple[float, float]:
    """(calls per second, p50 ms) of ``call`` from ``threads`` threads for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds

    def work(mine: list[float]) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(m,)) for m in latencies]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    every = [v for m in latencies for v in m]
    return len(every) / (time.perf_counter() - started), statistics.median(every) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs")
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    rep = Report("imports", {"seconds": seconds})
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-imports-") as name:
        tmp = Path(name)
        models = tmp / "models"
        models.mkdir()
        pipe, row = _models(models)
        import onnxruntime

        session = onnxruntime.InferenceSession(str(models / "iris.onnx"))
        feed = {"X": np.asarray([row], dtype=np.float32)}
        rows = np.asarray([row])
        native = {
            "onnx": lambda: session.run(None, feed),
            "sklearn": lambda: (pipe.predict(rows), pipe.predict_proba(rows)),
        }
        load = Load(ensure_wrk(rep.console), tmp)
        with Modelyard(tmp) as yard:
            for kind, path, request in (
                ("onnx", "iris.onnx", {"X": row}),
                ("sklearn", "iris.skops", {"X": row}),
            ):
                body = {"project": str(models), "model_format": kind, "model_path": path}
                outcome = yard.api("POST", f"/api/v1/models/{kind}/deploy", body)
                envelope = orjson.dumps({"accessKey": outcome["access_key"], "request": request})
                target = Target(f"{yard.base}/model", envelope, yard.auth)
                served8 = load.run(target, 8, seconds, yard.pids())
                served1 = load.run(target, 1, seconds, yard.pids())
                rps8, _ = in_process(native[kind], 8, seconds)
                _, p50 = in_process(native[kind], 1, seconds)
                base_rps = rep.add(Figure(f"{kind} in-process c=8", "req/s", [rps8]))
                rep.add(Figure(f"{kind} served c=8", "req/s", [served8.rps]), base_rps)
                base_p50 = rep.add(Figure(f"{kind} in-process p50 c=1", "ms", [p50]))
                rep.add(Figure(f"{kind} served p50 c=1", "ms", [served1.p50_ms]), base_p50)
    rep.console.print(rep.table())
    rep.console.print(f"written to {rep.write()}")


if __name__ == "__main__":
    main()
