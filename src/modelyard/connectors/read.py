"""The entry point the monitors and the server use: ``probe`` a connection, ``read_batches`` of
new rows for labels, ``read_frame`` of a whole (bounded) source for a reference.

Dispatch is by kind: SQL kinds to ``connectors.sql``, file kinds to ``connectors.files``, stream
kinds (``probe`` only: streams are consumed, not read) to ``connectors.streams``, each imported
when first needed: their drivers (PyMySQL, pyarrow, nats-py, aio-pika) are the optional
``connectors`` extra, so a server installed without it starts and says what to install only
when a connection is used. Every failure of the source is ``ConnectorError`` naming the
connection and what failed, never a credential; a source that does not fit its connection's
kind (a table for a bucket, a path for a database) is ``InvalidInput``.

>>> from modelyard.connectors.base import Connection, Credentials, Source
>>> folder = Connection("crn:modelyard:project/p", "drop", "files", {"path": "/nonexistent"})
>>> probe(folder, Credentials()).ok
False
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pandas as pd

from modelyard.connectors.base import (
    FILE_KINDS,
    SQL_KINDS,
    STREAM_KINDS,
    Connection,
    ConnectorError,
    Credentials,
    Probe,
    Source,
)
from modelyard.errors import InvalidInput

__all__ = ["MAX_BATCH_ROWS", "probe", "read_batches", "read_frame"]

MAX_BATCH_ROWS = 1_000_000


def _family(connection: Connection) -> Any:
    """The module that reads ``connection``'s kind, imported now; a missing driver is an error
    naming the connection, the module and the extra that brings it."""
    if connection.kind in SQL_KINDS:
        name = "sql"
    elif connection.kind in FILE_KINDS:
        name = "files"
    else:
        name = "streams"
    try:
        return importlib.import_module(f"modelyard.connectors.{name}")
    except ImportError as exc:
        raise ConnectorError(
            f"connection {connection.name!r} ({connection.kind}) needs the Python module "
            f"{exc.name!r}, which is not installed here; install the connectors extra: "
            "pip install 'modelyard[connectors]'",
            connection=connection.name,
        ) from None


def probe(connection: Connection, credentials: Credentials) -> Probe:
    """Connect and say what is there (``ok``) or exactly why not (``ok`` False, the detail
    naming the connection and what failed). Never raises for the source's failures."""
    try:
        if connection.kind in SQL_KINDS + FILE_KINDS + STREAM_KINDS:
            found: Probe = _family(connection).probe(connection, credentials)
            return found
    except ConnectorError as exc:
        return Probe(False, exc.message)
    raise InvalidInput(
        f"connection {connection.name!r} has kind {connection.kind!r}; expected one of "
        f"{', '.join(SQL_KINDS + FILE_KINDS + STREAM_KINDS)}",
        argument="kind",
    )


def _check(connection: Connection, source: Source, batch_rows: int) -> None:
    if (
        isinstance(batch_rows, bool)
        or not isinstance(batch_rows, int)
        or not (1 <= batch_rows <= MAX_BATCH_ROWS)
    ):
        raise InvalidInput(
            f"batch_rows={batch_rows!r} is not accepted; expected an integer from 1 to "
            f"{MAX_BATCH_ROWS}",
            argument="batch_rows",
        )
    kind = connection.kind
    if kind in SQL_KINDS and (bool(source.table) == bool(source.query) or source.path):
        raise InvalidInput(
            f"connection {connection.name!r} is a {kind} database; a source from it names "
            "exactly one of table and query (not a path)",
            argument="table",
        )
    if kind in FILE_KINDS and (not source.path or source.table or source.query):
        raise InvalidInput(
            f"connection {connection.name!r} is a {'folder' if kind == 'files' else 'bucket'}; "
            "a source from it names a path pattern such as 'labels/*.parquet' (not a table or "
            "query)",
            argument="path",
        )
    if kind in STREAM_KINDS:
        raise InvalidInput(
            f"connection {connection.name!r} is a {kind} stream: it is consumed by the server "
            "(labels), not read as a table; expected a database, folder or bucket connection",
            argument="connection",
        )


def read_batches(
    connection: Connection,
    credentials: Credentials,
    source: Source,
    *,
    after: Any = None,
    batch_rows: int = 100_000,
    limit: int | None = None,
) -> Iterator[pd.DataFrame]:
    """DataFrames of at most ``batch_rows`` rows of ``source``. With ``source.time_column``:
    ordered by it, and with ``after`` not None only rows with ``time_column >= after`` (``>=``:
    rows sharing the watermark's time are read again, never missed; the caller counts them as
    duplicates). ``limit``: at most that many rows in all (the database stops there)."""
    _check(connection, source, batch_rows)
    batches: Iterator[pd.DataFrame] = _family(connection).read_batches(
        connection, credentials, source, after=after, batch_rows=batch_rows, limit=limit
    )
    return batches


def read_frame(
    connection: Connection, credentials: Credentials, source: Source, *, max_rows: int
) -> pd.DataFrame:
    """All of ``source`` as one DataFrame (a reference); InvalidInput naming the connection and
    the limit when it holds more than ``max_rows`` rows (only ``max_rows + 1`` are read)."""
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise InvalidInput(
            f"max_rows={max_rows!r} is not accepted; expected a positive integer",
            argument="max_rows",
        )
    batch = min(max_rows + 1, MAX_BATCH_ROWS)
    frames = list(
        read_batches(connection, credentials, source, batch_rows=batch, limit=max_rows + 1)
    )
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(frame) > max_rows:
        what = source.table or source.query or source.path
        raise InvalidInput(
            f"{what!r:.200} from connection {connection.name!r} holds more than {max_rows} "
            f"rows; accepted: at most {max_rows} (narrow it with a query or a sample)",
            argument="reference",
        )
    return frame
