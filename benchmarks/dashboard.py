"""Dashboard page and API times over a store of 1,000,000 predictions.

The real server app (lifespan, SQLite store, registry, a deployed model with a real replica) is
driven in-process through httpx's ASGI transport, signed in through the dashboard's own form.
Data: ``--predictions`` records (default 1,000,000) with five numeric metrics spread evenly over
the last 60 days, the older half rolled up by ``store.rollup()`` (default policy: raw for 30 days,
then minute/hour/day buckets); one day of ``tech.*`` intervals every 10 s; hourly monitor results
(psi/ks per feature, ROC AUC, flags) for the 60 days; a reference sample; some delayed labels.
A second, busy model ("busy", a store-only deployment): ``--busy`` predictions (default 200,000)
in the last hour, about 3,300 a minute, for recent predictions and raw series under load.

Each request is timed ``--repeat`` times (default 3); the table shows the median wall time and
the process CPU time of the same runs. Baseline in the same run: one ``store.scan`` of the 30 days
of raw records (what a page reading raw data over its range would pay before any work).

    .venv/bin/python benchmarks/dashboard.py [--predictions N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, timer
from modelyard.monitors import upload_reference
from modelyard.runtime import free_port
from modelyard.server import ServerConfig, create_app
from modelyard.store.base import Identity, Prediction, Query, RecordKind

DAY = 86_400_000
HOUR = 3_600_000
FEATURES = ("tenure", "charges", "calls", "age", "score")
PREDICT = """
import modelyard

@modelyard.model_metrics
def predict(args):
    modelyard.track_metric("score", args["x"] / 10)
    return {"double": args["x"] * 2}
"""


def _fill(services: Any, ident: Identity, n: int, now: int) -> dict[str, float]:
    """Write the data set; returns how long each step took (seconds)."""
    store = services.store
    rng = np.random.default_rng(7)
    took: dict[str, float] = {}
    start = now - 60 * DAY
    step = (60 * DAY) // n
    t0 = time.perf_counter()
    batch = 50_000
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        cols = {f: rng.normal(50, 15, hi - lo).round(3) for f in FEATURES}
        store.write_predictions(
            [
                Prediction(
                    f"p{i:08d}",
                    ident,
                    start + i * step,
                    start + i * step + 3,
                    {f: float(cols[f][i - lo]) for f in FEATURES},
                )
                for i in range(lo, hi)
            ]
        )
    took["write predictions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(200):  # labels for the newest predictions (search by uuid shows them)
        store.add_delayed(f"p{n - 1 - i:08d}", {"label": i % 2}, "crm")
    took["add 200 delayed labels"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(8_640):  # one day of gateway intervals, 10 s each
        s = now - DAY + i * 10_000
        p50 = float(rng.gamma(2.0, 1.0))
        store.add_aggregate(
            ident.deployment_crn,
            s,
            s + 10_000,
            {
                "tech.requests": 120,
                "tech.failures": int(rng.random() < 0.05),
                "tech.rps": 12.0,
                "tech.latency_p50_ms": p50,
                "tech.latency_p95_ms": p50 * 2,
                "tech.latency_p99_ms": p50 * 3,
            },
        )
    for h in range(60 * 24):  # hourly monitor results over the 60 days
        s = now - 60 * DAY + h * HOUR
        metrics: dict[str, Any] = {"n": 694, "roc_auc": 0.8 + 0.05 * float(rng.random())}
        for f in FEATURES:
            metrics[f"psi.{f}"] = float(rng.gamma(1.0, 0.05))
            metrics[f"ks.{f}"] = float(rng.random() * 0.1)
        flagged = [f for f in FEATURES if metrics[f"psi.{f}"] > 0.2]
        metrics["drift.flagged"] = len(flagged)
        metrics["drift.flagged_features"] = flagged
        store.replace_aggregate(ident.deployment_crn, s, s + HOUR, metrics, "monitor:churn")
    took["add 10,080 aggregates"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = store.rollup(now_ms=now)
    took["rollup"] = time.perf_counter() - t0
    print(f"rollup: {report}")
    reference = pd.DataFrame({f: rng.normal(50, 15, 5_000) for f in FEATURES})
    upload_reference(reference, ident.deployment_crn, "training", store=store)
    return took


def _fill_busy(services: Any, n: int, now: int) -> Identity:
    """``n`` predictions of model "busy" spread over the last hour (a store-only deployment)."""
    model, _ = services.registry.create_model("busy")
    ident = Identity(model.crn, "crn:modelyard:build/busy", "crn:modelyard:deployment/busy")
    services.store.register_identity(ident)
    step = HOUR / n
    for lo in range(0, n, 50_000):
        services.store.write_predictions(
            [
                Prediction(f"busy{i:08d}", ident, now - HOUR + int(i * step), now, {"score": 0.5})
                for i in range(lo, min(n, lo + 50_000))
            ]
        )
    return ident


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="modelyard-dash-bench-"))
    project = home.parent / (home.name + "-project")
    project.mkdir()
    (project / "predict.py").write_text(textwrap.dedent(PREDICT))
    app = create_app(ServerConfig(home=home / "home", port=free_port(), inject_env=False))
    async with app.router.lifespan_context(app):
        services = app.state.services
        admin = (home / "home" / "admin.key").read_text().strip()
        auth = {"Authorization": f"Bearer {admin}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=600
        ) as client:
            deployed = await client.post(
                "/api/v1/models/churn/deploy",
                json={"project": str(project), "example": {"x": 1}},
                headers=auth,
            )
            deployed.raise_for_status()
            d = deployed.json()
            ident = Identity(d["model"]["crn"], d["build"]["crn"], d["deployment"]["crn"])
            now = time.time_ns() // 1_000_000
            fill = await asyncio.to_thread(_fill, services, ident, args.predictions, now)
            busy = await asyncio.to_thread(_fill_busy, services, args.busy, now)
            info = services.store.info()
            print(f"store: {info}")
            login = await client.get("/ui/login")
            token = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            signed = await client.post("/ui/login", data={"csrf": token, "api_key": admin})
            assert signed.status_code == 303, signed.text
            dep = ident.deployment_crn
            newest = f"p{args.predictions - 1:08d}"
            q7 = {"deployment": dep, "start": now - 7 * DAY, "end": now}
            pages = {
                "page /ui/ (overview)": "/ui/",
                "page /ui/models/churn": "/ui/models/churn",
                "page /ui/metrics": "/ui/metrics",
                "page /ui/drift": "/ui/drift",
                "page /ui/alerts": "/ui/alerts",
                "page /ui/models/churn/timeline (7 days)": "/ui/models/churn/timeline",
                "page /ui/models/churn/compare (two periods)": "/ui/models/churn/compare",
                "api timeline, 7 days": ("/api/v1/models/churn/timeline", {"range": "7d"}),
                "api timeline, all (60 days)": ("/api/v1/models/churn/timeline", {"range": "all"}),
                "api compare, 30 days vs 30 days": (
                    "/api/v1/models/churn/compare",
                    {
                        "a": f"period:{now - 60 * DAY}-{now - 30 * DAY - 1}",
                        "b": f"period:{now - 30 * DAY}-{now}",
                    },
                ),
                "api overview": "/api/v1/overview",
                "api tech, last hour": ("/api/v1/models/churn/tech", {"start": now - HOUR}),
                "api tech, last day": ("/api/v1/models/churn/tech", {"start": now - DAY}),
                "api tech, last 7 days": ("/api/v1/models/churn/tech", {"start": now - 7 * DAY}),
                "api series score, last hour (raw)": (
                    "/api/v1/series",
                    {"deployment": dep, "metric": "score", "start": now - HOUR},
                ),
                "api series score, last day (raw, sampled)": (
                    "/api/v1/series",
                    {"deployment": dep, "metric": "score", "start": now - DAY},
                ),
                "api series score, 60 days (rollups + raw)": (
                    "/api/v1/series",
                    {"deployment": dep, "metric": "score", "start": now - 61 * DAY},
                ),
                "api series roc_auc, 60 days (aggregates)": (
                    "/api/v1/series",
                    {"deployment": dep, "metric": "roc_auc", "start": now - 61 * DAY},
                ),
                "api series keys, last 7 days": ("/api/v1/series/keys", q7),
                "api recent predictions": "/api/v1/models/churn/predictions",
                "api prediction by uuid": f"/api/v1/predictions/{newest}",
                "api drift, 7 days": ("/api/v1/drift", q7),
                "api drift, 60 days": (
                    "/api/v1/drift",
                    {"deployment": dep, "start": now - 61 * DAY, "end": now},
                ),
                "api drift cell, raw window": (
                    "/api/v1/drift/distributions",
                    {
                        "deployment": dep,
                        "feature": "tenure",
                        "start": now - 2 * HOUR,
                        "end": now - HOUR,
                    },
                ),
                "busy: api recent predictions": "/api/v1/models/busy/predictions",
                "busy: api series score, last hour (sampled)": (
                    "/api/v1/series",
                    {"deployment": busy.deployment_crn, "metric": "score", "start": now - HOUR},
                ),
                "busy: api series score, last day (sampled)": (
                    "/api/v1/series",
                    {"deployment": busy.deployment_crn, "metric": "score", "start": now - DAY},
                ),
                "api drift cell, rolled-up window": (
                    "/api/v1/drift/distributions",
                    {
                        "deployment": dep,
                        "feature": "tenure",
                        "start": now - 45 * DAY,
                        "end": now - 45 * DAY + HOUR,
                    },
                ),
            }
            rows = []
            for label, target in pages.items():
                path, params = (target, None) if isinstance(target, str) else target
                walls, cpus, size = [], [], 0
                for _ in range(args.repeat):
                    with timer() as t:
                        answer = await client.get(path, params=params)
                    assert answer.status_code == 200, (label, answer.status_code, answer.text)
                    walls.append(t.wall)
                    cpus.append(t.cpu)
                    size = len(answer.content)
                rows.append(
                    {
                        "what": label,
                        "wall_s": statistics.median(walls),
                        "cpu_s": statistics.median(cpus),
                        "bytes": size,
                        "runs": walls,
                    }
                )
            walls = []
            for _ in range(args.repeat):
                with timer() as t:
                    n = sum(
                        len(b)
                        for b in services.store.scan(
                            Query(
                                deployment_crn=dep,
                                start_ms=now - 30 * DAY,
                                end_ms=now,
                                kinds=frozenset({RecordKind.PREDICTION}),
                            )
                        )
                    )
                walls.append(t.wall)
            baseline = {"what": f"baseline: scan of 30 days of raw records ({n})",
                        "wall_s": statistics.median(walls)}  # fmt: skip
    return {
        "predictions": args.predictions,
        "fill_s": fill,
        "store": {
            "predictions": info.predictions,
            "rollup_buckets": {str(k): v for k, v in info.rollup_buckets.items()},
            "aggregates": info.aggregates,
        },
        "rows": rows,
        "baseline": baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--busy", type=int, default=200_000)
    args = parser.parse_args()
    result = asyncio.run(_main(args))
    print(f"\n{'what':<48} {'median wall':>12} {'cpu':>8} {'bytes':>10}")
    for row in result["rows"]:
        print(
            f"{row['what']:<48} {row['wall_s'] * 1000:>9.0f} ms {row['cpu_s'] * 1000:>5.0f} ms "
            f"{row['bytes']:>10}"
        )
    b = result["baseline"]
    print(f"{b['what']:<48} {b['wall_s'] * 1000:>9.0f} ms")
    print("fill:", {k: round(v, 1) for k, v in result["fill_s"].items()})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dashboard.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
