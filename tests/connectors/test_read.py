"""``connectors.read``: dispatch by kind, sources that do not fit their connection, ``read_frame``
bounds, stream kinds handed to ``connectors.streams``, and a credential's value in no message and
no log record, even when a driver echoes it."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from modelyard.connectors import Connection, ConnectorError, Credentials, Source
from modelyard.connectors._failures import failure
from modelyard.connectors.read import probe, read_batches, read_frame
from modelyard.errors import InvalidInput

from ._sources import connection, mysql

PASSWORD = f"Pw-{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    ("conn", "source", "expected"),
    [
        (connection("postgresql", host="h", database="d"), Source(path="x/*.csv"), "exactly one"),
        (connection("postgresql", host="h", database="d"), Source(table="t", query="q"), "one"),
        (connection("files", path="/d"), Source(table="t"), "names a path pattern"),
        (connection("s3", bucket="abc"), Source(query="SELECT 1"), "is a bucket"),
        (connection("nats", servers=["nats://h:4222"], stream="S"), Source(table="t"), "stream"),
    ],
)
def test_a_source_must_fit_its_connection(conn: Connection, source: Source, expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected):
        read_batches(conn, Credentials(), source)


def test_bounds_are_checked(tmp_path: Path) -> None:
    conn = connection("files", path=str(tmp_path))
    with pytest.raises(InvalidInput, match="batch_rows=0 is not accepted"):
        read_batches(conn, Credentials(), Source(path="*.csv"), batch_rows=0)
    with pytest.raises(InvalidInput, match="max_rows=0 is not accepted"):
        read_frame(conn, Credentials(), Source(path="*.csv"), max_rows=0)
    assert read_frame(conn, Credentials(), Source(path="*.csv"), max_rows=5).empty


def test_stream_kinds_are_probed_by_connectors_streams() -> None:
    found = probe(connection("rabbitmq", host="127.0.0.1", port=1, queue="q"), Credentials())
    assert not found.ok and "connection 'src'" in found.detail


def test_a_driver_echoing_the_credential_is_scrubbed() -> None:
    conn = connection("postgresql", host="h", database="d", secrets={"password": "DB_PW"})
    error = failure(
        conn,
        Credentials({"password": PASSWORD}),
        None,
        f"could not connect with password={PASSWORD}: connection refused",
    )
    assert PASSWORD not in error.message and "password=***" in error.message
    assert error.message.startswith("connection 'src' (postgresql at h/d): connection refused")
    assert error.details == {"connection": "src", "failed": "connection refused"}
    assert PASSWORD not in repr(Credentials({"password": PASSWORD}))


@pytest.mark.postgres
def test_no_credential_in_messages_or_logs(
    mysql_db: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = f"h2_{uuid.uuid4().hex[:8]}"
    mysql(
        mysql_db,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'",
        f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{PASSWORD}'",
    )
    try:
        wrong = Credentials({"password": PASSWORD + "x"})
        my = connection(
            "mysql", host="127.0.0.1", database=mysql_db, user=user, secrets={"password": "DB_PW"}
        )
        messages = [probe(my, wrong).detail]
        pg = connection(
            "postgresql",
            host="127.0.0.1",
            database="test",
            user=user,
            secrets={"password": "DB_PW"},
        )
        messages.append(probe(pg, Credentials({"password": PASSWORD})).detail)
        for conn, credentials in ((my, wrong), (pg, Credentials({"password": PASSWORD}))):
            with pytest.raises(ConnectorError) as caught:
                list(read_batches(conn, credentials, Source(table="labels")))
            messages.append(str(caught.value))
    finally:
        mysql(mysql_db, f"DROP USER '{user}'@'%'", f"DROP USER '{user}'@'localhost'")
    assert all("bad credentials" in message for message in messages), messages
    logged = [record.getMessage() for record in caplog.records]
    for text in messages + logged:
        assert PASSWORD not in text
