"""Schema 3 -> 4: a database written before jobs existed gains the job tables on open and keeps
its records, models and keys. The version-3 database is built from the migration files
themselves (1, its rows, then 2 and 3 as an upgrade would), not by the current code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import modelyard
from modelyard.registry import Registry
from modelyard.registry._keys import hash_token
from modelyard.specs import JobSpec
from modelyard.store import MetricsStore, Query
from modelyard.store.postgres import PostgresStore
from modelyard.store.schema import CREATE_MIGRATIONS_TABLE, SCHEMA_VERSION, migrations
from modelyard.store.sqlaccess import dialect, reading
from modelyard.store.sqlite import SQLiteStore

from .test_migration import T0, UUIDS, WHO, tables, v1_rows

ACCESS_KEY = "mya_old-key-of-churn"


def v3_rows() -> list[tuple[str, tuple[Any, ...]]]:
    """What version-2/3 code wrote besides the metrics: the migrations it applied and a model."""
    return [
        (
            "INSERT INTO schema_migrations (version, name, modelyard_version, applied_ms) "
            "VALUES (?, ?, ?, ?)",
            (version, name, "0.1.0", T0),
        )
        for version, name in ((2, "registry"), (3, "uuid_index"))
    ] + [
        (
            "INSERT INTO models (crn, name, access_key_hash, access_key_prefix, settings, "
            "created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (WHO.model_crn, "churn", hash_token(ACCESS_KEY), ACCESS_KEY[:12], "{}", T0, T0),
        )
    ]


def build_v3(execute: Callable[[str, tuple[Any, ...]], Any], kind: str) -> None:
    steps = migrations(kind)
    assert [m.version for m in steps[:3]] == [1, 2, 3]
    execute(CREATE_MIGRATIONS_TABLE, ())
    for statement in steps[0].statements:
        execute(statement, ())
    for text, params in v1_rows():
        execute(text, params)
    for migration in steps[1:3]:
        for statement in migration.statements:
            execute(statement, ())
    for text, params in v3_rows():
        execute(text, params)


def sqlite_v3(tmp_path: Path) -> Callable[[], MetricsStore]:
    import sqlite3

    path = tmp_path / "v3.db"
    with sqlite3.connect(path) as conn:
        build_v3(conn.execute, "sqlite")
    return lambda: SQLiteStore(path)


def postgres_v3(url: str) -> Callable[[], MetricsStore]:
    import psycopg

    with psycopg.connect(url) as conn:
        build_v3(
            lambda text, params: conn.execute(text.replace("?", "%s"), params),  # type: ignore[call-overload]
            "postgres",
        )
    return lambda: PostgresStore(url)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_version_3_database_gains_the_job_tables_and_keeps_its_data(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        opener = sqlite_v3(tmp_path)
    else:
        opener = postgres_v3(request.getfixturevalue("postgres_schema_url"))
    with opener() as store:
        assert {"jobs", "job_runs", "job_slots", "run_metrics"} <= tables(store)
        info = store.info()
        assert info.schema_version == SCHEMA_VERSION >= 4
        assert (info.predictions, info.delayed, info.aggregates) == (5, 1, 1)
        records, _ = store.read(Query(deployment_crn=WHO.deployment_crn, end_ms=T0 + 100))
        assert [r.uuid for r in records if r.uuid is not None] == UUIDS
        registry = Registry(store)
        assert registry.model_by_access_key(ACCESS_KEY).crn == WHO.model_crn
        job = registry.create_job(
            JobSpec(name="monitor", project="/srv/p", script="m.py", cron="*/5 * * * *")
        )
        assert registry.claim_slot(job.id, T0, 1, "a", 60_000)
        run = registry.create_run(job.id, T0, 1, "schedule")
    with opener() as store:  # reopening applies nothing twice and finds the new rows
        with reading(store) as cur:
            applied = [
                tuple(row)
                for row in cur.execute(
                    "SELECT version, name, modelyard_version FROM schema_migrations "
                    "ORDER BY version"
                ).fetchall()
            ]
        assert applied[:3] == [
            (1, "initial", "0.1.0"),
            (2, "registry", "0.1.0"),
            (3, "uuid_index", "0.1.0"),
        ]
        assert applied[3] == (4, "jobs", modelyard.__version__)
        assert len(applied) == SCHEMA_VERSION
        registry = Registry(store)
        assert registry.get_job("monitor") == job
        assert registry.get_run(run.id) == run
        assert registry.last_slot(job.id) == T0
        assert dialect(store) == backend


def _legacy_job(name: str, script: str, args: list[str]) -> tuple[str, tuple[Any, ...]]:
    """A job row as version-5 code wrote it (22 columns, no requirements or monitor)."""
    return (
        "INSERT INTO jobs (id, name, project, script, args, cron, timezone, every_ms, after_id, "
        "manual, timeout_ms, retries, retry_backoff_ms, env, overlap, catch_up, notify, "
        "notify_on, paused, builtin, created_ms, updated_ms) VALUES "
        "(?, ?, ?, ?, ?, NULL, 'UTC', NULL, NULL, 1, 60000, 0, 1000, '{}', 'skip', 'latest', "
        "'[]', '[\"failure\"]', 0, 0, ?, ?)",
        (f"crn:modelyard:job/{name}", name, "/srv/p", script, orjson.dumps(args).decode(), T0, T0),
    )


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_version_6_turns_launcher_monitor_jobs_into_monitor_jobs(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Before version 6 a --monitor job ran a launcher written to .modelyard/run_monitor.py with
    args ['run', SPEC, ...]; after it, the job records the spec and runs the installed runner."""
    rows = [
        _legacy_job("watch", ".modelyard/run_monitor.py", ["run", "w.yaml", "--json"]),
        _legacy_job("plain", "tick.py", ["run", "x"]),
    ]
    if backend == "sqlite":
        import sqlite3

        path = tmp_path / "v5.db"
        with sqlite3.connect(path) as conn:
            _build_v5(conn.execute, "sqlite", rows)
        opener: Callable[[], MetricsStore] = lambda: SQLiteStore(path)  # noqa: E731
    else:
        import psycopg

        url = request.getfixturevalue("postgres_schema_url")
        with psycopg.connect(url) as conn:
            _build_v5(
                lambda text, params: conn.execute(text.replace("?", "%s"), params),  # type: ignore[call-overload]
                "postgres",
                rows,
            )
        opener = lambda: PostgresStore(url)  # noqa: E731
    with opener() as store:
        assert store.info().schema_version == SCHEMA_VERSION >= 6
        registry = Registry(store)
        watch = registry.get_job("watch")
        assert (watch.script, watch.monitor, watch.args) == (None, "w.yaml", ("--json",))
        plain = registry.get_job("plain")
        assert (plain.script, plain.monitor, plain.args) == ("tick.py", None, ("run", "x"))
        assert watch.requirements is None and plain.requirements is None


def _build_v5(
    execute: Callable[[str, tuple[Any, ...]], Any],
    kind: str,
    rows: list[tuple[str, tuple[Any, ...]]],
) -> None:
    build_v3(execute, kind)
    for migration in migrations(kind)[3:5]:
        for statement in migration.statements:
            execute(statement, ())
        execute(
            "INSERT INTO schema_migrations (version, name, modelyard_version, applied_ms) "
            "VALUES (?, ?, ?, ?)",
            (migration.version, migration.name, "0.1.0", T0),
        )
    for text, params in rows:
        execute(text, params)
