"""Migration 0007 on a store made by the release before it (``data/home_v6.sql``, written by
``data/make_home_v6.py`` with that release's code): opened with today's code, every row is
converted to typed numbers and every read gives what it gave then, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pandas.testing as pdt
import pytest

from modelyard.store import Identity, MetricsStore, Prediction, Query, RecordKind, RowBatch
from modelyard.store.postgres import PostgresStore
from modelyard.store.schema import SCHEMA_VERSION
from modelyard.store.sqlite import SQLiteStore
from modelyard.tracking.frame import batch_to_frame

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = orjson.loads((DATA / "home_v6.json").read_bytes())
NOW = 1_700_000_000_000
RAW_ONE = "00000000-0000-4000-8000-000000000001"


def _sqlite_home(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript((DATA / "home_v6.sql").read_text(encoding="utf-8"))
    conn.close()


def _postgres_home(url: str, tmp_path: Path) -> None:
    """The same store on PostgreSQL: schema versions 1..6 as that release created them, and the
    rows of the SQLite dump copied table by table."""
    import psycopg

    from modelyard.store.schema import CREATE_MIGRATIONS_TABLE, migrations

    source = tmp_path / "v6.db"
    _sqlite_home(source)
    lite = sqlite3.connect(source)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CREATE_MIGRATIONS_TABLE)
        for migration in migrations("postgres"):
            if migration.version > EXPECTED["schema_version"]:
                break
            for statement in migration.statements:
                conn.execute(statement)
        tables = [
            row[0]
            for row in lite.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            columns = [row[1] for row in lite.execute(f"PRAGMA table_info({table})")]
            rows = lite.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
            if rows:
                marks = ", ".join(["%s"] * len(columns))
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                    )
            if table in ("identities", "delayed_metrics", "aggregates", "rollup_buckets"):
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                )
    lite.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def v6_home(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], MetricsStore]:
    if request.param == "sqlite":
        path = tmp_path / "home.db"
        _sqlite_home(path)
        return lambda: SQLiteStore(path)
    url: str = request.getfixturevalue("postgres_schema_url")
    _postgres_home(url, tmp_path)
    return lambda: PostgresStore(url)


def _references(store: MetricsStore) -> dict[str, list[dict[str, Any]]]:
    return {
        crn: [r.to_reference() for r in store.read(Query(deployment_crn=crn, end_ms=NOW))[0]]
        for crn in EXPECTED["reads"]
    }


def _json_frame(records: list[dict[str, Any]]) -> Any:
    """The frame the JSON rows of these prediction records gave before version 7."""
    batch = RowBatch()
    for r in records:
        batch.kind.append("prediction")
        batch.uuid.append(r["predictionUuid"])
        batch.model_crn.append(r["modelCrn"])
        batch.build_crn.append(r["modelBuildCrn"])
        batch.deployment_crn.append(r["modelDeploymentCrn"])
        batch.start_ms.append(r["startTimeStampMs"])
        batch.end_ms.append(r["endTimeStampMs"])
        batch.metrics.append(orjson.dumps(r["metrics"]).decode())
        batch.tier_ms.append(None)
    return batch_to_frame([batch])


def test_a_home_of_the_release_before_is_converted_and_reads_the_same(
    v6_home: Callable[[], MetricsStore],
) -> None:
    with v6_home() as store:
        info = store.info()
        assert info.schema_version == SCHEMA_VERSION
        assert {
            "predictions": info.predictions,
            "delayed": info.delayed,
            "aggregates": info.aggregates,
        } == EXPECTED["info"]
        got = _references(store)
        # Byte for byte: the same records, values, types and key order as before.
        assert orjson.dumps(got) == orjson.dumps(EXPECTED["reads"])
        for uuid, history in EXPECTED["delayed"].items():
            assert [
                [d.key, d.value, d.tracked_ms, d.source] for d in store.delayed_history(uuid)
            ] == (history)
        # Every raw row now has its layout: nothing is left as JSON-only text.
        from modelyard.store import sqlaccess

        with sqlaccess.reading(store) as cur:
            cur.execute("SELECT COUNT(*) FROM predictions WHERE layout_id IS NULL")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT COUNT(*) FROM metric_layouts")
            assert cur.fetchone()[0] >= 5
        # The typed frame of the predictions equals the frame their JSON rows gave.
        for crn, records in EXPECTED["reads"].items():
            only = frozenset({RecordKind.PREDICTION})
            frame = batch_to_frame(store.scan(Query(deployment_crn=crn, end_ms=NOW, kinds=only)))
            raw = [r for r in records if r["predictionUuid"] is not None]
            pdt.assert_frame_equal(frame, _json_frame(raw))
        # And it keeps working: late ground truth, new records, rollup.
        store.add_delayed(RAW_ONE, {"truth": 1}, "after-upgrade")
        assert store.find_prediction(RAW_ONE).metrics["truth"] == 1
        who = Identity(
            "crn:modelyard:model/churn", "crn:modelyard:build/b1", "crn:modelyard:deployment/a"
        )
        store.write_predictions([Prediction("after-1", who, NOW - 10, NOW - 5, {"score": 0.5})])
        assert store.find_prediction("after-1").metrics == {"score": 0.5}
    with v6_home() as again:  # reopening converts nothing twice
        assert again.info().schema_version == SCHEMA_VERSION
        assert again.find_prediction("after-1").metrics == {"score": 0.5}
