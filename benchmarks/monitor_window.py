"""Monitor window benchmark: one window held in memory (the path before issue 16) against the
same window streamed in chunks (``modelyard.monitors.streamed``), peak memory and time.

A SQLite store gets one hour of N predictions (tenure and charges numeric, plan categorical, a
calibrated score, a label on four records in five) and a 4,000-row reference; then
``run_monitor`` computes that window twice, each in its own subprocess so its peak RSS (from
``os.wait4``) is its own: once with ``MODELYARD_MONITOR_MEMORY_ROWS`` above N (in memory), once
with it at 200,000 (streamed). Metrics: drift, prediction_drift, classification,
estimated_performance and label_coverage. The table shows wall seconds, peak RSS and the largest
difference between the two answers next to the bound the streamed one states.

Usage::

    .venv/bin/python benchmarks/monitor_window.py                  # 1M and 10M rows
    .venv/bin/python benchmarks/monitor_window.py --rows 100000    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
HOUR = 3_600_000
T0 = 1_780_000_000_000 // HOUR * HOUR
STREAM_AT = 200_000
KEYS = (
    "roc_auc",
    "roc_auc_ci_low",
    "pr_auc",
    "log_loss",
    "ks.tenure",
    "psi.tenure",
    "wasserstein.tenure",
    "chi2.plan",
    "estimated_roc_auc",
    "prediction_drift.ks",
    "label_delay_p50_ms",
)
BOUNDS = {
    "roc_auc": "roc_auc_error_bound",
    "roc_auc_ci_low": "roc_auc_ci_error_bound",
    "pr_auc": "pr_auc_error_bound",
    "wasserstein.tenure": "drift.wasserstein_error_bound",
    "estimated_roc_auc": "estimated_roc_auc_error_bound",
}


def _frame(rng: np.random.Generator, n: int, shift: float) -> dict[str, Any]:
    tenure = rng.normal(24.0 + shift, 8.0, n)
    charges = rng.normal(70.0, 20.0, n)
    plan = rng.choice(np.array(["basic", "plus", "pro"]), n, p=[0.5, 0.3, 0.2])
    logit = -0.08 * (tenure - 24.0) + 0.03 * (charges - 70.0) + np.where(plan == "basic", 0.4, -0.3)
    prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < prob).astype(int)
    return {
        "tenure": tenure,
        "charges": charges,
        "plan": plan,
        "probability": prob,
        "churned": label,
    }


def populate(home: Path, rows: int) -> str:
    os.environ["MODELYARD_HOME"] = str(home)
    import pandas as pd

    from modelyard.ids import new_crn, new_prediction_uuid
    from modelyard.monitors import upload_reference
    from modelyard.monitors._store import monitor_store
    from modelyard.store.base import Identity, Prediction

    store = monitor_store(None)
    ident = Identity(new_crn("model"), new_crn("build"), new_crn("deployment"))
    rng = np.random.default_rng(1)
    step = 50_000
    for first in range(0, rows, step):
        n = min(step, rows - first)
        cols = _frame(rng, n, 2.0)
        times = T0 + (np.arange(first, first + n) * (HOUR // rows))
        preds = []
        for i in range(n):
            m = {
                "tenure": float(cols["tenure"][i]),
                "charges": float(cols["charges"][i]),
                "plan": str(cols["plan"][i]),
                "probability": float(cols["probability"][i]),
            }
            if (first + i) % 5:
                m["churned"] = int(cols["churned"][i])
            t = int(times[i])
            preds.append(Prediction(new_prediction_uuid(), ident, t, t + 3, m))
        store.write_predictions(preds)
    upload_reference(
        pd.DataFrame(_frame(np.random.default_rng(2), 4000, 0.0)), ident.deployment_crn, store=store
    )
    store.close()
    return ident.deployment_crn


def child(deployment: str) -> None:
    from modelyard.monitors import MonitorSpec, run_monitor

    spec = MonitorSpec.from_dict(
        {
            "name": "bench",
            "deployment": deployment,
            "reference": {"stored": "training"},
            "features": ["tenure", "charges", "plan"],
            "categorical": ["plan"],
            "prediction": "probability",
            "label": "churned",
            "window": "1h",
            "metrics": [
                "drift",
                "prediction_drift",
                "classification",
                "estimated_performance",
                "label_coverage",
            ],
        }
    )
    start = time.perf_counter()
    result = run_monitor(
        spec, window=(T0, T0 + HOUR), now_ms=T0 + 2 * HOUR, settle_ms=0, notify=False
    )
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "metrics": result[0].metrics}, default=str))


def run_child(home: Path, deployment: str, memory_rows: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "MODELYARD_HOME": str(home),
        "MODELYARD_MONITOR_MEMORY_ROWS": str(memory_rows),
    }
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", deployment],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"child failed ({status}): {out[-2000:]}")
    got = json.loads(out.strip().splitlines()[-1])
    got["peak_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--child")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "monitor_window.json")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    report = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="my-bench-") as tmp:
            home = Path(tmp)
            began = time.perf_counter()
            dep = populate(home, rows)
            print(f"{rows:,} rows written in {time.perf_counter() - began:.0f} s", flush=True)
            memory = run_child(home, dep, rows + 1)
            streamed = run_child(home, dep, STREAM_AT)
        diffs = {}
        for key in KEYS:
            a, b = memory["metrics"].get(key), streamed["metrics"].get(key)
            bound = streamed["metrics"].get(BOUNDS.get(key, ""), 0.0)
            if key == "label_delay_p50_ms":
                bound = "rank " + str(streamed["metrics"].get("label_delay.rank_error"))
            diffs[key] = {
                "memory": a,
                "streamed": b,
                "diff": None if a is None or b is None else abs(a - b),
                "bound": bound,
            }
        row = {
            "rows": rows,
            "memory_s": memory["seconds"],
            "memory_peak_mib": memory["peak_mib"],
            "streamed_s": streamed["seconds"],
            "streamed_peak_mib": streamed["peak_mib"],
            "streamed": streamed["metrics"].get("window.streamed"),
            "keys": diffs,
        }
        report.append(row)
        print(
            f"{rows:>11,}  in memory {memory['seconds']:7.1f} s {memory['peak_mib']:8.0f} MiB"
            f"   streamed {streamed['seconds']:7.1f} s {streamed['peak_mib']:8.0f} MiB",
            flush=True,
        )
        for key, d in diffs.items():
            print(f"    {key:22} diff {d['diff']!s:24} bound {d['bound']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
