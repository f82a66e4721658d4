"""Predictions under admin traffic: p99 of ``POST /api/v1/models/{name}/predict`` at concurrency
8, alone and while another client lists models and creates API keys in a loop, in the same run.

The server shares one event loop between the gateway and the control plane, so a control-plane
route that reads or writes the database on that loop stalls every prediction in flight. This
benchmark shows whether it does:

- a real ``modelyard server`` in a temp home, ``--models`` extra models registered (so listing
  them is real work: one query, or one per model), one small model deployed (one replica);
- ``quiet``: ``--concurrency`` keep-alive connections call the model for ``--seconds``;
- ``admin``: the same load while a separate process (its own GIL, so it does not slow the load
  generator) calls ``GET /api/v1/models`` and ``POST /api/v1/keys`` back to back.

Rounds alternate quiet and admin (``--repeat`` of each), and each figure is the median over its
rounds; the ratio of the admin p99 to the quiet p99 is the figure to watch (1.0: admin traffic
costs predictions nothing). The load generator is ``serving.py``'s asyncio client. Writes JSON
under ``benchmarks/results/``.

    .venv/bin/python benchmarks/admin_traffic.py                  # 10 s rounds x 3: about 2 min
    .venv/bin/python benchmarks/admin_traffic.py --seconds 3 --repeat 1   # a smoke run

To measure another checkout's code, put its ``src`` first: ``PYTHONPATH=/other/src``; the
script prints which ``modelyard`` it imported (the server process imports the same one).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from _common import Figure, Report
from serving import Load, Modelyard, Run, Target

MODEL = """
    import modelyard


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("tenure", args["tenure"])
        return {"churn": args["tenure"] > 3, "score": 0.25}
"""
INPUT = {"tenure": 5, "plan": "basic", "charges": 42.5}


def admin_loop(base: str, token: str, stop: Any, counts: Any) -> None:
    """In its own process: list models, create a key, again, until ``stop`` is set."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        n = 0
        while not stop.is_set():
            client.get("/api/v1/models").raise_for_status()
            client.post("/api/v1/keys", json={"name": f"bench-{n}"}).raise_for_status()
            n += 1
            counts.value = n


def register_models(home: Path, count: int) -> None:
    """``count`` models straight in the server's registry (no builds: listing is what counts)."""
    from modelyard.registry import Registry
    from modelyard.store import open_store

    store = open_store(f"sqlite:///{home / 'modelyard.db'}")
    try:
        registry = Registry(store)
        for i in range(count):
            registry.create_model(f"extra-{i:04d}")
    finally:
        store.close()


def admin_round(load: Load, target: Target, args: Any, yard: Modelyard) -> tuple[Run, float]:
    """One load run with the admin process running; returns it and the admin calls per second."""
    ctx = multiprocessing.get_context("spawn")
    stop, counts = ctx.Event(), ctx.Value("i", 0)
    token = yard.auth["Authorization"].removeprefix("Bearer ")
    admin = ctx.Process(target=admin_loop, args=(yard.base, token, stop, counts), daemon=True)
    admin.start()
    try:
        time.sleep(1.0)  # the admin client is up and calling before the load starts
        first, t0 = counts.value, time.perf_counter()
        run = load.run(target, args.concurrency, args.seconds, yard.pids())
        rate = (counts.value - first) / (time.perf_counter() - t0)
    finally:
        stop.set()
        admin.join(60)
        if admin.is_alive():
            admin.kill()
    if admin.exitcode not in (0, None, -9):
        raise SystemExit(f"the admin client failed (exit code {admin.exitcode})")
    return run, rate * 2  # two calls per loop


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each kind")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--models", type=int, default=100, help="extra registered models")
    args = parser.parse_args()
    import modelyard

    rep = Report("admin_traffic", {})
    console = rep.console
    console.print(f"modelyard imported from {Path(modelyard.__file__).parent}")
    quiet: list[Run] = []
    busy: list[Run] = []
    admin_rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as name:
        tmp = Path(name)
        project = tmp / "project"
        project.mkdir()
        (project / "predict.py").write_text(textwrap.dedent(MODEL))
        load = Load(None, tmp)
        with Modelyard(tmp) as yard:
            register_models(yard.home, args.models)
            yard.deploy("bench", project, INPUT)
            headers = {**yard.auth, "Content-Type": "application/json"}
            target = Target(
                f"{yard.base}/api/v1/models/bench/predict", orjson.dumps(INPUT), headers
            )
            load.run(target, args.concurrency, 1.0, yard.pids())  # warm up
            for i in range(args.repeat):
                quiet.append(load.run(target, args.concurrency, args.seconds, yard.pids()))
                run, rate = admin_round(load, target, args, yard)
                busy.append(run)
                admin_rates.append(rate)
                console.print(
                    f"round {i + 1}: p99 quiet {quiet[-1].p99_ms:.2f} ms, with admin traffic "
                    f"{run.p99_ms:.2f} ms ({rate:.0f} admin calls/s)"
                )
    rep.params = {**vars(args), "generator": load.name, "modelyard": modelyard.__file__}
    base_p99 = rep.add(Figure("p99 quiet", "ms", [r.p99_ms for r in quiet]))
    rep.add(Figure("p99 with admin traffic", "ms", [r.p99_ms for r in busy]), base_p99)
    base_p50 = rep.add(Figure("p50 quiet", "ms", [r.p50_ms for r in quiet]))
    rep.add(Figure("p50 with admin traffic", "ms", [r.p50_ms for r in busy]), base_p50)
    base_rps = rep.add(Figure("predictions quiet", "req/s", [r.rps for r in quiet]))
    rep.add(Figure("predictions with admin traffic", "req/s", [r.rps for r in busy]), base_rps)
    rep.add(Figure("admin calls", "calls/s", admin_rates, note="list models + create key"))
    errors = [r.errors for r in quiet + busy if r.errors]
    if errors:
        rep.skip("errors", f"the load generator saw errors: {errors}")
    console.print(rep.table())
    console.print(f"wrote {rep.write()}")


if __name__ == "__main__":
    main()
