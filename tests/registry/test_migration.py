"""Schema 1 -> 2: a database written before the registry existed gains its tables on open and
keeps every record. The version-1 database is built from the 0001 migration file itself, with
rows inserted the way version-1 code wrote them."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import modelyard
from modelyard.registry import Registry
from modelyard.store import Identity, MetricsStore, Query
from modelyard.store.postgres import PostgresStore
from modelyard.store.schema import CREATE_MIGRATIONS_TABLE, SCHEMA_VERSION, migrations
from modelyard.store.sqlite import SQLiteStore

WHO = Identity("crn:modelyard:model/old", "crn:modelyard:build/old", "crn:modelyard:deployment/old")
T0 = 1_700_000_000_000
UUIDS = [str(uuid.UUID(int=i + 1)) for i in range(5)]
# Ids come from the database, as version-1 code let them (so its sequences stay right).
DEPLOYMENT_ID = "(SELECT id FROM identities WHERE deployment_crn = ?)"


def v1_rows() -> list[tuple[str, tuple[Any, ...]]]:
    rows: list[tuple[str, tuple[Any, ...]]] = [
        (
            "INSERT INTO schema_migrations (version, name, modelyard_version, applied_ms) "
            "VALUES (?, ?, ?, ?)",
            (1, "initial", "0.1.0", T0),
        ),
        (
            "INSERT INTO identities (deployment_crn, build_crn, model_crn) VALUES (?, ?, ?)",
            (WHO.deployment_crn, WHO.build_crn, WHO.model_crn),
        ),
        (
            "INSERT INTO aggregates (deployment_id, start_ms, end_ms, metrics, created_ms) "
            f"VALUES ({DEPLOYMENT_ID}, ?, ?, ?, ?)",
            (WHO.deployment_crn, T0, T0 + 10, '{"accuracy": 0.75}', T0),
        ),
        (
            "INSERT INTO delayed_metrics (uuid, key, value, tracked_ms, source) "
            "VALUES (?, ?, ?, ?, ?)",
            (UUIDS[2], "truth", "1", T0 + 99, "test"),
        ),
    ]
    for i, u in enumerate(UUIDS):
        delayed = '{"truth": 1}' if i == 2 else None
        rows.append(
            (
                "INSERT INTO predictions (deployment_id, start_ms, uuid, end_ms, metrics, delayed) "
                f"VALUES ({DEPLOYMENT_ID}, ?, ?, ?, ?, ?)",
                (
                    WHO.deployment_crn,
                    T0 + i,
                    u,
                    T0 + i + 3,
                    orjson.dumps({"x": i}).decode(),
                    delayed,
                ),
            )
        )
    return rows


def sqlite_v1(tmp_path: Path) -> Callable[[], MetricsStore]:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.execute(CREATE_MIGRATIONS_TABLE)
        for statement in migrations("sqlite")[0].statements:
            conn.execute(statement)
        for text, params in v1_rows():
            conn.execute(text, params)
    return lambda: SQLiteStore(path)


def postgres_v1(url: str) -> Callable[[], MetricsStore]:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(CREATE_MIGRATIONS_TABLE)
        for statement in migrations("postgres")[0].statements:
            conn.execute(statement)  # type: ignore[arg-type]
        for text, params in v1_rows():
            conn.execute(text.replace("?", "%s"), params)  # type: ignore[arg-type]
    return lambda: PostgresStore(url)


def tables(store: MetricsStore) -> set[str]:
    from modelyard.store.sqlaccess import dialect, reading

    query = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if dialect(store) == "sqlite"
        else "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    with reading(store) as cur:
        return {row[0] for row in cur.execute(query).fetchall()}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_version_1_database_gains_the_registry_and_keeps_its_records(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        opener = sqlite_v1(tmp_path)
    else:
        opener = postgres_v1(request.getfixturevalue("postgres_schema_url"))
    with opener() as store:
        assert "models" in tables(store)
        info = store.info()
        assert info.schema_version == SCHEMA_VERSION >= 2
        assert (info.predictions, info.delayed, info.aggregates) == (5, 1, 1)
        records, _ = store.read(Query(deployment_crn=WHO.deployment_crn, end_ms=T0 + 100))
        predictions = [r for r in records if r.uuid is not None]
        assert [r.uuid for r in predictions] == UUIDS
        assert [r.metrics.get("x") for r in predictions] == [0, 1, 2, 3, 4]
        assert predictions[2].metrics["truth"] == 1
        assert [r.metrics for r in records if r.uuid is None] == [{"accuracy": 0.75}]
        assert store.resolve(WHO.deployment_crn) == WHO
        # The registry works on the upgraded database, next to the old records.
        registry = Registry(store)
        model, key = registry.create_model("churn")
        build = registry.add_build(
            "churn", digest="d", file="p.py", function="predict", python="py", env_key="e", ok=True
        )
        deployment = registry.add_deployment("churn", build.crn)
        assert registry.model_by_access_key(key) == model
        assert store.resolve(deployment.crn).model_crn == model.crn
    with opener() as store:  # reopening applies nothing twice
        from modelyard.store.sqlaccess import reading

        with reading(store) as cur:
            applied = cur.execute(
                "SELECT version, name, modelyard_version FROM schema_migrations ORDER BY version"
            ).fetchall()
        assert [tuple(r) for r in applied] == [(1, "initial", "0.1.0")] + [
            (m.version, m.name, modelyard.__version__) for m in migrations(store.backend)[1:]
        ]
        assert tuple(applied[1])[:2] == (2, "registry")
        assert Registry(store).get_model("churn") == model
        assert store.info().predictions == 5
