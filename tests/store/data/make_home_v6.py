"""Writes ``home_v6.sql`` and ``home_v6.json``: a store made by the release before schema version 7
(metrics as JSON text), and what it read back then.

Run with that release's code first on the path, e.g.::

    git archive <commit before 0007> src | tar -x -C /tmp/v6
    PYTHONPATH=/tmp/v6/src .venv/bin/python tests/store/data/make_home_v6.py

``tests/store/test_typed_migration.py`` loads the dump into SQLite and PostgreSQL, opens it with
today's code (which migrates it) and checks every read against the JSON.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
from pathlib import Path

import orjson

from modelyard.store import Identity, Prediction, Query, SQLiteStore
from modelyard.store.base import DAY_MS, HOUR_MS, RollupPolicy
from modelyard.store.schema import SCHEMA_VERSION

HERE = Path(__file__).resolve().parent
NOW = 1_700_000_000_000
A = Identity("crn:modelyard:model/churn", "crn:modelyard:build/b1", "crn:modelyard:deployment/a")
B = Identity("crn:modelyard:model/churn", "crn:modelyard:build/b2", "crn:modelyard:deployment/b")


def metrics(rng: random.Random, i: int) -> dict[str, object]:
    kind = i % 7
    if kind < 3:  # the common record: numbers only
        return {"score": rng.random(), "latency_ms": rng.randint(1, 90), "flag": i % 2 == 0}
    if kind == 3:
        return {"score": rng.random(), "segment": rng.choice(["a", "b", "ü"]), "note": None}
    if kind == 4:
        return {"features": {"age": rng.randint(18, 90), "tags": ["x", "y"]}, "score": -0.0}
    if kind == 5:
        return {"big": 2**63 + i, "tiny": -(2**63), "ratio": 1e-300, 'q"uote': 1.5, "": 2}
    return {} if i % 2 else {"score": 3, "only_int": 7}


def build(folder: Path) -> Path:
    rng = random.Random(6)
    path = folder / "home.db"
    store = SQLiteStore(path)
    predictions = []
    for i in range(300):
        who = A if i % 3 else B
        # 200 raw records over the last day, 100 more 40 days ago (rolled up below)
        start = NOW - (40 * DAY_MS if i >= 200 else HOUR_MS) + i * 1_000
        uuid = f"00000000-0000-4000-8000-{i:012d}"
        predictions.append(Prediction(uuid, who, start, start + 5, metrics(rng, i)))
    store.write_predictions(predictions)
    for i in (1, 2, 4, 10, 250):  # ground truth: on raw rows and on a rolled-up one
        uuid = f"00000000-0000-4000-8000-{i:012d}"
        store.add_delayed(uuid, {"truth": i % 2, "score": "overridden"}, "labels", NOW - i)
    store.add_delayed("00000000-0000-4000-8000-000000000001", {"truth": None}, "fix", NOW)
    store.add_aggregate(A.deployment_crn, NOW - DAY_MS, NOW, {"auc": 0.91, "n": 3})
    store.rollup(RollupPolicy(), now_ms=NOW)
    expected = {
        "schema_version": SCHEMA_VERSION,
        "info": {
            "predictions": store.info().predictions,
            "delayed": store.info().delayed,
            "aggregates": store.info().aggregates,
        },
        "reads": {
            who.deployment_crn: [
                r.to_reference()
                for r in store.read(Query(deployment_crn=who.deployment_crn, end_ms=NOW))[0]
            ]
            for who in (A, B)
        },
        "delayed": {
            uuid: [[d.key, d.value, d.tracked_ms, d.source] for d in store.delayed_history(uuid)]
            for uuid in ("00000000-0000-4000-8000-000000000001",)
        },
    }
    store.close()
    (HERE / "home_v6.json").write_bytes(orjson.dumps(expected, option=orjson.OPT_INDENT_2))
    return path


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = build(Path(folder))
        conn = sqlite3.connect(path)
        dump = "\n".join(conn.iterdump())
        conn.close()
    (HERE / "home_v6.sql").write_text(dump + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
