"""A monitor run imports its ground truth from a connection (``labels:``): a SQLite file, a folder
of Parquet and CSV files, PostgreSQL and MariaDB tables (each test makes its own and drops it),
then computes the label metrics; and every failure of the issue's "Bad input and failure": a
clear error naming connection, column and row, the failed import recorded, nothing stored, the
watermark kept, and the next run picks up where the last good one ended."""

from __future__ import annotations

import sqlite3
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from sklearn.metrics import roc_auc_score

from _services import mariadb, mariadb_database
from modelyard.errors import ConnectorError, InvalidInput
from modelyard.ids import new_crn
from modelyard.monitors.run import run_monitor
from modelyard.registry import Registry
from modelyard.specs.monitor import MonitorSpec
from modelyard.store.base import Identity, MetricsStore

from .conftest import HOUR, T0, Stream, write_stream


def _world(store: MetricsStore, windows: int = 2) -> tuple[Stream, Registry, str]:
    registry = Registry(store)
    owner = f"u{uuidlib.uuid4().hex[:6]}"
    registry.people.create_user(owner)
    project_crn = registry.people.create_project("churn", owner=owner).crn
    model, _ = registry.create_model(f"churn-{owner}", project_crn=project_crn)
    assert model.project_crn is not None
    ident = Identity(model.crn, new_crn("build"), new_crn("deployment"))
    unlabelled = frozenset(range(windows))
    return (
        write_stream(store, windows, unlabelled=unlabelled, ident=ident),
        registry,
        model.project_crn,
    )


def _labels(stream: Stream, windows: range, ghosts: int = 3) -> pd.DataFrame:
    rows = []
    for w in windows:
        for i, (uuid, label) in enumerate(
            zip(stream.uuids[w], stream.windows[w]["churned"], strict=True)
        ):
            rows.append((uuid, int(label), T0 + w * HOUR + i))
    rows += [(str(uuidlib.uuid4()), 1, T0 + 10 * HOUR + g) for g in range(ghosts)]
    return pd.DataFrame(rows, columns=["prediction_uuid", "churned", "updated_at"])


def _spec(stream: Stream, labels: dict[str, Any]) -> MonitorSpec:
    return MonitorSpec.from_dict(
        {
            "name": f"m-{uuidlib.uuid4().hex[:8]}",
            "deployment": stream.ident.deployment_crn,
            "prediction": "probability",
            "label": "churned",
            "window": "1h",
            "metrics": ["classification", "label_coverage"],
            "min_labels": 1,
            "labels": {"uuid_column": "prediction_uuid", "time_column": "updated_at", **labels},
        }
    )


def _run(spec: MonitorSpec, windows: int = 2) -> list[Any]:
    return run_monitor(spec, window=(T0, T0 + windows * HOUR), now_ms=T0 + 20 * HOUR)


def _check_auc(stream: Stream, results: list[Any], w: int) -> None:
    rows = stream.windows[w]
    expected = roc_auc_score(rows["churned"], rows["probability"])
    assert results[w].metrics["roc_auc"] == pytest.approx(expected)


def test_sqlite_file_labels_then_incremental_and_duplicates(
    sdk_store: MetricsStore, tmp_path: Path
) -> None:
    stream, registry, project = _world(sdk_store)
    path = tmp_path / "crm.db"
    with closing(sqlite3.connect(path)) as db:
        _labels(stream, range(1)).to_sql("outcomes", db, index=False)
        db.commit()
    registry.connections.create(project, "crm", "sqlite", {"path": str(path)}, {}, "test")
    spec = _spec(stream, {"connection": "crm", "table": "outcomes"})
    results = _run(spec)
    _check_auc(stream, results, 0)
    assert "roc_auc" not in results[1].metrics
    (first,) = registry.labels.imports(spec.name)
    assert (first.rows_read, first.matched, first.unmatched, first.duplicates) == (303, 300, 3, 0)
    assert len(first.unmatched_sample) == 3 and first.error is None
    assert first.watermark_after == T0 + 10 * HOUR + 2
    # Window 1's labels arrive; the next run reads only what is new (and the rows at the mark).
    with closing(sqlite3.connect(path)) as db:
        later = _labels(stream, range(1, 2), ghosts=0)
        later["updated_at"] += 20 * HOUR
        later.to_sql("outcomes", db, index=False, if_exists="append")
        db.commit()
    results = _run(spec)
    _check_auc(stream, results, 1)
    second = registry.labels.imports(spec.name)[0]
    assert (second.rows_read, second.matched, second.unmatched) == (301, 300, 1)
    # The same rows again: duplicates, nothing written twice.
    before = sdk_store.info().delayed
    _run(spec)
    third = registry.labels.imports(spec.name)[0]
    assert (third.rows_read, third.matched, third.duplicates) == (1, 1, 1)
    assert sdk_store.info().delayed == before


def test_folder_of_parquet_and_csv(sdk_store: MetricsStore, tmp_path: Path) -> None:
    stream, registry, project = _world(sdk_store)
    folder = tmp_path / "drop"
    folder.mkdir()
    frame = _labels(stream, range(2), ghosts=0)
    frame.iloc[:300].to_parquet(folder / "a.parquet", index=False)
    frame.iloc[300:].to_parquet(folder / "b.parquet", index=False)
    registry.connections.create(project, "drop", "files", {"path": str(folder)}, {}, "test")
    spec = _spec(stream, {"connection": "drop", "path": "*.parquet"})
    results = _run(spec)
    _check_auc(stream, results, 0)
    _check_auc(stream, results, 1)
    csv = tmp_path / "csv"
    csv.mkdir()
    frame.to_csv(csv / "labels.csv", index=False)
    registry.connections.create(project, "csvs", "files", {"path": str(csv)}, {}, "test")
    other = _spec(stream, {"connection": "csvs", "path": "labels.csv"})
    _run(other)
    (done,) = registry.labels.imports(other.name)
    assert (done.rows_read, done.matched, done.duplicates) == (600, 600, 600)


@pytest.fixture
def pg_table(postgres_url: str) -> Iterator[str]:
    schema = f"h3_{uuidlib.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}".outcomes (prediction_uuid uuid, churned int, '
            "updated_at bigint, note text)"
        )
    try:
        yield schema
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _pg_insert(postgres_url: str, schema: str, frame: pd.DataFrame) -> None:
    copy_in = f'COPY "{schema}".outcomes (prediction_uuid, churned, updated_at) FROM STDIN'
    with (
        psycopg.connect(postgres_url, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy(copy_in) as copy,
    ):
        for row in frame.itertuples(index=False):
            copy.write_row(row)


def _pg_connection(registry: Registry, project: str, name: str = "warehouse") -> None:
    options = {"host": "127.0.0.1", "port": "5432", "database": "test", "user": "postgres"}
    registry.connections.create(project, name, "postgresql", options, {}, "test")


@pytest.mark.postgres
def test_postgresql_table_and_its_failures(
    sdk_store: MetricsStore, postgres_url: str, pg_table: str
) -> None:
    stream, registry, project = _world(sdk_store)
    _pg_insert(postgres_url, pg_table, _labels(stream, range(2)))
    _pg_connection(registry, project)
    spec = _spec(stream, {"connection": "warehouse", "table": f"{pg_table}.outcomes"})
    results = _run(spec)
    _check_auc(stream, results, 0)
    _check_auc(stream, results, 1)
    good = registry.labels.watermark(spec.name)
    # A query that fails, a column that does not exist: recorded, nothing stored, mark kept.
    for labels, error, words in [
        ({"query": "SELECT nonsense FROM nowhere"}, ConnectorError, ["warehouse"]),
        (
            {"table": f"{pg_table}.outcomes", "columns": {"nope": "churned"}},
            ConnectorError,
            ["nope"],
        ),
        ({"table": f"{pg_table}.outcomes", "columns": ["note"]}, None, []),
    ]:
        data = spec.to_dict()
        data["labels"] = {
            "connection": "warehouse",
            "uuid_column": "prediction_uuid",
            "time_column": "updated_at",
            **labels,
        }
        bad = MonitorSpec.from_dict(data)
        before = sdk_store.info().delayed
        if error is None:
            _run(bad)  # a label column of nulls only: read, nothing to store
            continue
        with pytest.raises(error) as info:
            _run(bad)
        assert all(w in info.value.message for w in words), info.value.message
        assert sdk_store.info().delayed == before
        assert registry.labels.imports(spec.name)[0].error is not None
        assert registry.labels.watermark(spec.name) == good


@pytest.mark.postgres
def test_bad_values_name_connection_column_and_row(
    sdk_store: MetricsStore, postgres_url: str, pg_table: str, tmp_path: Path
) -> None:
    stream, registry, project = _world(sdk_store, 1)
    path = tmp_path / "bad.db"
    frame = _labels(stream, range(1), ghosts=0)
    frame.loc[5, "prediction_uuid"] = "customer-42"
    with closing(sqlite3.connect(path)) as db:
        frame.to_sql("outcomes", db, index=False)
        db.execute("CREATE TABLE typed (prediction_uuid TEXT, churned BLOB, updated_at INT)")
        db.execute("INSERT INTO typed VALUES (?, ?, ?)", (stream.uuids[0][0], b"\x01", T0))
        db.commit()
    registry.connections.create(project, "lite", "sqlite", {"path": str(path)}, {}, "test")
    spec = _spec(stream, {"connection": "lite", "table": "outcomes"})
    with pytest.raises(
        InvalidInput, match=r"'lite', column 'prediction_uuid', row 6: 'customer-42'"
    ):
        _run(spec, 1)
    assert sdk_store.info().delayed == 0
    assert registry.labels.watermark(spec.name) is None
    (failed,) = registry.labels.imports(spec.name)
    assert "row 6" in (failed.error or "")
    typed = _spec(stream, {"connection": "lite", "table": "typed"})
    with pytest.raises(InvalidInput, match=r"column 'churned', row 1: a label must be"):
        _run(typed, 1)
    assert sdk_store.info().delayed == 0


def test_a_source_failing_halfway_stores_nothing(sdk_store: MetricsStore, tmp_path: Path) -> None:
    stream, registry, project = _world(sdk_store)
    folder = tmp_path / "drop"
    folder.mkdir()
    frame = _labels(stream, range(2), ghosts=0)
    frame.iloc[:300].to_parquet(folder / "a.parquet", index=False)
    (folder / "b.parquet").write_bytes(b"PAR1 this file was cut off while being written")
    registry.connections.create(project, "drop", "files", {"path": str(folder)}, {}, "test")
    spec = _spec(stream, {"connection": "drop", "path": "*.parquet"})
    with pytest.raises(ConnectorError, match="drop"):
        _run(spec)
    assert sdk_store.info().delayed == 0  # a.parquet was read, and nothing of it stored
    assert registry.labels.watermark(spec.name) is None
    frame.iloc[300:].to_parquet(folder / "b.parquet", index=False)  # fixed: the next run
    results = _run(spec)
    _check_auc(stream, results, 1)
    assert registry.labels.imports(spec.name)[0].matched == 600


@pytest.fixture
def mysql_db() -> Iterator[str]:
    with mariadb_database("h3") as database:
        yield database


def test_mariadb_query_labels(sdk_store: MetricsStore, mysql_db: str) -> None:
    stream, registry, project = _world(sdk_store)
    frame = _labels(stream, range(2))
    conn = mariadb(database=mysql_db)
    with closing(conn), conn.cursor() as cur:
        cur.execute("CREATE TABLE outcomes (id CHAR(36), y INT, t BIGINT)")
        cur.executemany(
            "INSERT INTO outcomes VALUES (%s, %s, %s)",
            list(frame.itertuples(index=False, name=None)),
        )
    options = {"host": "127.0.0.1", "port": "3306", "database": mysql_db, "user": "root"}
    registry.connections.create(project, "crm", "mysql", options, {}, "test")
    spec = _spec(
        stream,
        {
            "connection": "crm",
            "query": "SELECT id AS prediction_uuid, y AS churned, t AS updated_at FROM outcomes",
        },
    )
    results = _run(spec)
    _check_auc(stream, results, 0)
    _check_auc(stream, results, 1)
    assert registry.labels.imports(spec.name)[0].unmatched == 3


def test_reference_from_a_connection(sdk_store: MetricsStore, tmp_path: Path) -> None:
    from .conftest import reference_frame

    stream, registry, project = _world(sdk_store, 1)
    folder = tmp_path / "warehouse"
    folder.mkdir()
    reference_frame().to_parquet(folder / "training.parquet", index=False)
    registry.connections.create(project, "wh", "files", {"path": str(folder)}, {}, "test")
    spec = MonitorSpec.from_dict(
        {
            "name": "ref-from-connection",
            "deployment": stream.ident.deployment_crn,
            "prediction": "probability",
            "features": ["tenure", "charges", "plan"],
            "categorical": ["plan"],
            "reference": {"connection": "wh", "path": "training.parquet"},
            "window": "1h",
            "metrics": ["drift", "prediction_drift"],
        }
    )
    (result,) = _run(spec, 1)
    assert result.metrics["drift.flagged_features"] == []
    assert "psi.tenure" in result.metrics
