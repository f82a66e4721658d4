"""Migrations: a database left at an older schema version is brought up to date on open, data
included, on both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import modelyard
from modelyard.errors import Conflict
from modelyard.store import BucketSummary, Identity, MetricsStore, Prediction, Query, RecordKind
from modelyard.store.postgres import PostgresStore
from modelyard.store.schema import CREATE_MIGRATIONS_TABLE, SCHEMA_VERSION, migrations
from modelyard.store.sqlite import SQLiteStore

MIN = 60_000
BUCKET = 1_700_000_000_000 - 1_700_000_000_000 % MIN  # an epoch-aligned minute
T0 = BUCKET + 20
WHO = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d")
RAW = "11111111-1111-4111-8111-111111111111"
ROLLED = "22222222-2222-4222-8222-222222222222"

Execute = Callable[[str, tuple[Any, ...]], None]


@contextmanager
def sqlite_at(path: Path) -> Iterator[Execute]:
    conn = sqlite3.connect(path, isolation_level=None)
    yield lambda sql, params=(): conn.execute(sql, params)  # type: ignore[misc]
    conn.close()


@contextmanager
def postgres_at(url: str) -> Iterator[Execute]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        yield lambda sql, params=(): conn.execute(sql.replace("?", "%s"), params)  # type: ignore[misc]


def build_version_1(execute: Execute, dialect: str) -> None:
    """A database as version 1 left it: one raw prediction and one rolled up into a bucket."""
    execute(CREATE_MIGRATIONS_TABLE, ())
    (first,) = [m for m in migrations(dialect) if m.version == 1]
    for statement in first.statements:
        execute(statement, ())
    execute(
        "INSERT INTO schema_migrations (version, name, modelyard_version, applied_ms) "
        "VALUES (1, 'initial', '0.1.0', 0)",
        (),
    )
    execute(
        "INSERT INTO identities (id, deployment_crn, build_crn, model_crn) VALUES (1, ?, ?, ?)",
        (WHO.deployment_crn, WHO.build_crn, WHO.model_crn),
    )
    execute(
        "INSERT INTO predictions (deployment_id, start_ms, uuid, end_ms, metrics) "
        "VALUES (1, ?, ?, ?, '{\"x\": 1.0}')",
        (T0 + 10 * MIN, RAW, T0 + 10 * MIN),
    )
    summary = BucketSummary()
    summary.add_metrics({"x": 2.0})
    execute(
        "INSERT INTO rollup_buckets (id, deployment_id, tier_ms, bucket_start_ms, records, summary)"
        " VALUES (1, 1, ?, ?, 1, ?)",
        (MIN, BUCKET, summary.to_bytes()),
    )
    execute("INSERT INTO rolled_uuids (uuid, bucket_id) VALUES (?, 1)", (ROLLED,))


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], MetricsStore]:
    if request.param == "sqlite":
        path = tmp_path / "old.db"
        with sqlite_at(path) as execute:
            build_version_1(execute, "sqlite")
        return lambda: SQLiteStore(path)
    url: str = request.getfixturevalue("postgres_schema_url")
    with postgres_at(url) as execute:
        build_version_1(execute, "postgres")
    return lambda: PostgresStore(url)


def test_a_version_1_database_is_migrated_with_its_data(
    old_store: Callable[[], MetricsStore],
) -> None:
    with old_store() as store:
        info = store.info()
        assert info.schema_version == SCHEMA_VERSION
        assert (info.predictions, info.rollup_buckets) == (1, {MIN: 1})
        # Both uuids still resolve: the raw one merges, the rolled-up one reaches its bucket.
        store.add_delayed(RAW, {"truth": 1}, source="after-upgrade")
        store.add_delayed(ROLLED, {"truth": 0}, source="after-upgrade")
        records, _ = store.read(Query(deployment_crn=WHO.deployment_crn, end_ms=T0 + 3_600_000))
        by_kind = {r.kind: r for r in records}
        assert by_kind[RecordKind.PREDICTION].metrics == {"x": 1.0, "truth": 1}
        assert by_kind[RecordKind.ROLLUP].metrics["truth"]["count"] == 1
        # Both are still taken.
        for taken in (RAW, ROLLED):
            with pytest.raises(Conflict, match=taken):
                store.write_predictions([Prediction(taken, WHO, T0, T0, {})])
        # Writing new records works on the new layout.
        store.write_predictions([Prediction("new-1", WHO, T0 + 5, T0 + 6, {"x": 3})])
        assert store.info().predictions == 2
    with old_store() as again:  # reopening applies nothing twice
        assert again.info().schema_version == SCHEMA_VERSION


def test_every_migration_records_the_release_that_applied_it(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT version, modelyard_version FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert rows == [(v, modelyard.__version__) for v in range(1, SCHEMA_VERSION + 1)]
