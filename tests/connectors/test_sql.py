"""SQL connectors against the real services: PostgreSQL (5432), MariaDB (3306) and SQLite files.
Each test makes its own schema or database. Probes that succeed, each failure kind (refused,
unknown host, bad credentials, unknown database, missing table, missing column, dropped
halfway), incremental reads by time column (>= the watermark, ordered) and reads in batches."""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pymysql
import pytest

from modelyard.connectors import Connection, ConnectorError, Credentials, Source
from modelyard.connectors.read import probe, read_batches, read_frame

from ._sources import MYSQL, connection, mysql, pg

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NONE = Credentials()


def _pg(**options: object) -> Connection:
    return connection(
        "postgresql", **{"host": "127.0.0.1", "database": "test", "user": "postgres", **options}
    )


def _labels_pg(schema: str, n: int) -> None:
    pg(
        f'CREATE TABLE "{schema}".labels (prediction_uuid text, churned boolean, score '
        f"double precision, n bigint, note text, updated_at timestamptz)"
    )
    pg(
        f'INSERT INTO "{schema}".labels SELECT md5(i::text), i %% 2 = 0, i / 4.0, i, '
        "CASE WHEN i %% 3 = 0 THEN NULL WHEN i %% 3 = 1 THEN '' ELSE 'a,\"b\"' || chr(10) || 'c' "
        "END, %s + make_interval(secs => i) FROM generate_series(1, %s) i",
        (T0, n),
    )


@pytest.mark.postgres
def test_postgresql_probe_and_typed_read(pg_schema: str) -> None:
    _labels_pg(pg_schema, 10)
    found = probe(_pg(), NONE)
    assert found.ok and found.detail.startswith("PostgreSQL ") and "database 'test'" in found.detail
    frame = read_frame(_pg(), NONE, Source(table=f"{pg_schema}.labels"), max_rows=100)
    assert len(frame) == 10
    assert frame["churned"].dtype == bool and frame["n"].dtype == "int64"
    assert str(frame["updated_at"].dtype) == "datetime64[us, UTC]"
    first = frame.iloc[0]
    assert first["score"] == 0.25 and first["updated_at"] == pd.Timestamp(T0 + timedelta(seconds=1))
    # NULL, the empty string and a value holding a comma, quotes and a newline stay apart
    assert frame["note"].iloc[0] == "" and pd.isna(frame["note"].iloc[2])
    assert frame["note"].iloc[1] == 'a,"b"\nc'


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_incremental_reads_in_batches(pg_schema: str) -> None:
    _labels_pg(pg_schema, 120_000)
    source = Source(table=f"{pg_schema}.labels", time_column="updated_at")
    after = T0 + timedelta(seconds=100_000)
    batches = list(read_batches(_pg(), NONE, source, after=after.isoformat(), batch_rows=7_000))
    assert [len(b) for b in batches] == [7_000, 7_000, 6_001]  # >=: the watermark's row again
    frame = pd.concat(batches, ignore_index=True)
    assert frame["updated_at"].is_monotonic_increasing
    assert frame["updated_at"].iloc[0] == pd.Timestamp(after)
    everything = sum(len(b) for b in read_batches(_pg(), NONE, source, batch_rows=50_000))
    assert everything == 120_000
    query = Source(
        query=f'SELECT prediction_uuid, updated_at FROM "{pg_schema}".labels '
        "WHERE note LIKE 'a%'",
        time_column="updated_at",
    )
    got = pd.concat(read_batches(_pg(), NONE, query, after=after))
    assert list(got.columns) == ["prediction_uuid", "updated_at"] and len(got) == 6_667


@pytest.mark.postgres
def test_postgresql_failures_name_what_failed(pg_schema: str) -> None:
    _labels_pg(pg_schema, 3)
    cases = {
        "connection refused": _pg(port=1),
        "unknown host": connection("postgresql", host="no-such-host.invalid", database="test"),
        "bad credentials": _pg(user=f"nobody_{uuid.uuid4().hex[:6]}"),
        "unknown database": _pg(database="no_such_database_h2"),
    }
    for what, conn in cases.items():
        found = probe(conn, NONE)
        assert not found.ok and "connection 'src' (postgresql at " in found.detail
        assert f"): {what}" in found.detail, found.detail
    with pytest.raises(ConnectorError, match=r"missing table: relation .*nope.* does not exist"):
        list(read_batches(_pg(), NONE, Source(table=f"{pg_schema}.nope")))
    with pytest.raises(ConnectorError, match=r"missing column: column \"churn\" does not exist"):
        list(read_batches(_pg(), NONE, Source(table=f"{pg_schema}.labels", columns=("churn",))))
    with pytest.raises(ConnectorError, match=r"missing column"):
        list(read_batches(_pg(), NONE, Source(table=f"{pg_schema}.labels", time_column="t")))


def _terminate(tag: str) -> None:
    pg("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (tag,))


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_dropped_halfway(pg_schema: str) -> None:
    _labels_pg(pg_schema, 300_000)
    # The server must still be sending when its connection is cut. pyarrow reads ahead in
    # 4 MiB blocks, so on a busy machine a plain table could be all in hand before the cut: a
    # 10 ms pause every 1,000 rows keeps the server sending for about 3 s.
    pg(
        f'CREATE FUNCTION "{pg_schema}".pause() RETURNS boolean LANGUAGE plpgsql VOLATILE '
        "AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN true; END $$"
    )
    slow = f'SELECT * FROM "{pg_schema}".labels WHERE n % 1000 <> 0 OR "{pg_schema}".pause()'
    tag = f"h2drop{uuid.uuid4().hex[:8]}"
    batches = read_batches(_pg(application_name=tag), NONE, Source(query=slow), batch_rows=1_000)
    assert len(next(batches)) == 1_000
    _terminate(tag)
    with pytest.raises(
        ConnectorError,
        match=r"connection 'src' \(postgresql at .*\): dropped "
        r"halfway|connection 'src' .*terminating connection",
    ):
        for _ in batches:
            pass


@pytest.mark.postgres
def test_postgresql_dropped_after_the_last_row_is_a_complete_read(pg_schema: str) -> None:
    # Every row arrived; the server goes before the reader has closed. Nothing is missing, so
    # nothing is an error (a closing COMMIT used to fail here, untranslated).
    _labels_pg(pg_schema, 10)
    tag = f"h2last{uuid.uuid4().hex[:8]}"
    batches = read_batches(_pg(application_name=tag), NONE, Source(table=f"{pg_schema}.labels"))
    assert len(next(batches)) == 10
    _terminate(tag)
    assert list(batches) == []


def _labels_mysql(database: str, n: int) -> None:
    mysql(
        database,
        "CREATE TABLE labels (prediction_uuid VARCHAR(40), churned BOOLEAN, "
        "updated_at DATETIME(3))",
        many=(
            "INSERT INTO labels VALUES (%s, %s, %s)",
            [(f"u{i}", i % 2, (T0 + timedelta(seconds=i)).replace(tzinfo=None)) for i in range(n)],
        ),
    )


def _my(database: str, **options: object) -> Connection:
    return connection(
        "mysql", **{"host": "127.0.0.1", "database": database, "user": "root", **options}
    )


def test_mysql_probe_incremental_and_batches(mysql_db: str) -> None:
    _labels_mysql(mysql_db, 2_500)
    found = probe(_my(mysql_db), NONE)
    assert found.ok and "MariaDB" in found.detail and "1 tables" in found.detail
    source = Source(table="labels", time_column="updated_at")
    after = (T0 + timedelta(seconds=1_000)).replace(tzinfo=None)
    batches = list(read_batches(_my(mysql_db), NONE, source, after=after, batch_rows=600))
    assert [len(b) for b in batches] == [600, 600, 300]
    frame = pd.concat(batches, ignore_index=True)
    assert (
        frame["prediction_uuid"].iloc[0] == "u1000" and frame["updated_at"].is_monotonic_increasing
    )
    text_after = str(after)  # a watermark kept as text reads the same rows
    assert sum(map(len, read_batches(_my(mysql_db), NONE, source, after=text_after))) == 1_500


def test_mysql_failures_name_what_failed(mysql_db: str) -> None:
    _labels_mysql(mysql_db, 3)
    user, password = f"h2_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    mysql(
        mysql_db,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
        f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'",
        f"GRANT SELECT ON `{mysql_db}`.* TO '{user}'@'%'",
        f"GRANT SELECT ON `{mysql_db}`.* TO '{user}'@'localhost'",
    )
    try:
        good = _my(mysql_db, user=user, secrets={"password": "DB_PASSWORD"})
        assert probe(good, Credentials({"password": password})).ok
        wrong = Credentials({"password": password + "-wrong"})
        found = probe(good, wrong)
        assert not found.ok and "bad credentials" in found.detail
        assert password not in found.detail
        assert "connection refused" in probe(_my(mysql_db, port=1), NONE).detail
        unknown = connection("mysql", host="no-such-host.invalid", database=mysql_db)
        assert "unknown host" in probe(unknown, NONE).detail
        with pytest.raises(
            ConnectorError,
            match=r"connection 'src' \(mysql at .*\): missing "
            r"table: .*nope.* doesn't exist",
        ):
            list(read_batches(good, Credentials({"password": password}), Source(table="nope")))
        with pytest.raises(ConnectorError, match=r"missing column: .*Unknown column 'churn'"):
            list(read_batches(_my(mysql_db), NONE, Source(table="labels", columns=("churn",))))
    finally:
        mysql(mysql_db, f"DROP USER '{user}'@'%'", f"DROP USER '{user}'@'localhost'")


@pytest.mark.slow
def test_mysql_dropped_halfway(mysql_db: str) -> None:
    _labels_mysql(mysql_db, 0)
    mysql(
        mysql_db,
        "INSERT INTO labels SELECT concat('u', seq, repeat('x', 30)), seq % 2, "
        "'2026-11-01' + INTERVAL seq SECOND FROM seq_0_to_399999",
    )  # more than socket buffers
    batches = read_batches(_my(mysql_db), NONE, Source(table="labels"), batch_rows=100)
    assert len(next(batches)) == 100
    with closing(pymysql.connect(**MYSQL, autocommit=True)) as admin, admin.cursor() as cur:
        cur.execute(
            "SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
            (mysql_db,),
        )
        for (pid,) in cur.fetchall():
            cur.execute(f"KILL {int(pid)}")
    with pytest.raises(ConnectorError, match=r"connection 'src' \(mysql at .*\): dropped halfway"):
        for _ in batches:
            pass


def _sqlite(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "labels.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE labels (prediction_uuid TEXT, churned INTEGER, updated_at TEXT)")
        conn.executemany(
            "INSERT INTO labels VALUES (?, ?, ?)",
            [(f"u{i}", i % 2, (T0 + timedelta(seconds=i)).isoformat(sep=" ")) for i in range(n)],
        )
        conn.commit()
    return path


def test_sqlite_read_only_incremental_and_failures(tmp_path: Path) -> None:
    path = _sqlite(tmp_path, 1_000)
    lite = connection("sqlite", path=str(path))
    assert probe(lite, NONE).detail.endswith("1 tables and views")
    source = Source(table="labels", time_column="updated_at")
    after = T0 + timedelta(seconds=990)
    got = pd.concat(read_batches(lite, NONE, source, after=after, batch_rows=4))
    assert list(got["prediction_uuid"]) == [f"u{i}" for i in range(990, 1000)]
    query = Source(query="SELECT * FROM labels WHERE churned = 1; ", columns=("prediction_uuid",))
    assert len(read_frame(lite, NONE, query, max_rows=500)) == 500
    with pytest.raises(ConnectorError, match="missing table: no such table: nope"):
        list(read_batches(lite, NONE, Source(table="nope")))
    with pytest.raises(ConnectorError, match="missing column: no such column: churn"):
        list(read_batches(lite, NONE, Source(table="labels", columns=("churn",))))
    gone = connection("sqlite", path=str(tmp_path / "gone.db"))
    assert "database file not found" in probe(gone, NONE).detail
    assert not (tmp_path / "gone.db").exists()  # read-only: never created
    with (
        pytest.raises(sqlite3.OperationalError, match="readonly"),  # and never written
        closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn,
    ):
        conn.execute("DELETE FROM labels")


@pytest.mark.slow
def test_mysql_stopping_early_does_not_read_the_rest(mysql_db: str) -> None:
    _labels_mysql(mysql_db, 0)
    mysql(
        mysql_db,
        "INSERT INTO labels SELECT concat('u', seq), seq % 2, "
        "'2026-11-01' + INTERVAL seq SECOND FROM seq_0_to_199999",
    )
    batches = read_batches(_my(mysql_db), NONE, Source(table="labels"), batch_rows=10)
    assert len(next(batches)) == 10
    batches.close()  # closes the connection instead of draining 199,990 rows
    assert sum(map(len, read_batches(_my(mysql_db), NONE, Source(table="labels")))) == 200_000
