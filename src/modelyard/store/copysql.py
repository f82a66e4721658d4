"""Each database's side of ``store copy``: its catalogue, one read snapshot, batched writes.

``copy.py`` decides what to copy and in which order; this module knows how each dialect lists
tables, columns, primary and foreign keys, reads a table in key order from one snapshot, writes a
batch (``COPY`` on PostgreSQL, ``executemany`` on SQLite) in the same transaction as the progress
marker, and sets PostgreSQL's identity sequences. Tables are read from the catalogue rather than
listed here, so the tables a future migration adds are copied without touching this code.

Connections are the driver's own, not a store's: the source must not be migrated by copying it
(a read-only SQLite connection; a read-only, repeatable-read PostgreSQL transaction), and the
target's batches need their own transactions with the marker, outside a store's retry loop.
"""

from __future__ import annotations

import abc
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from modelyard.errors import Conflict, StoreUnavailable

if TYPE_CHECKING:
    import psycopg

__all__ = ["MARKER", "MIGRATIONS", "PostgresSide", "Reference", "SQLiteSide", "Side", "ident"]

_COPY_LOCK = 0x4D59_4350  # "MYCP": any constant, the same in every Modelyard process
# The target's progress marker: present while a copy is unfinished, dropped when it completes.
MARKER = "modelyard_copy_progress"
MIGRATIONS = "schema_migrations"  # each side keeps its own: it says when that database was made
Reference = tuple[str, str, str]  # (column, parent table, parent column)

_MARKER_TABLE = (
    f"CREATE TABLE {MARKER} ("
    " table_name TEXT PRIMARY KEY,"
    " source_id TEXT NOT NULL,"
    " source TEXT NOT NULL,"
    " last_key TEXT,"
    " copied BIGINT NOT NULL,"
    " done SMALLINT NOT NULL,"
    " updated_ms BIGINT NOT NULL)"
)


def ident(name: str) -> str:
    """``name`` quoted as an SQL identifier (the same rule in SQLite and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


class Side(abc.ABC):
    """One database of a copy. ``location`` is for messages (no password)."""

    dialect: str
    location: str
    _mark = "?"

    # -- catalogue ------------------------------------------------------------------------------
    @abc.abstractmethod
    def tables(self) -> list[str]:
        """Every table, the marker and schema_migrations included."""

    @abc.abstractmethod
    def columns(self, table: str) -> list[str]: ...

    @abc.abstractmethod
    def primary_key(self, table: str) -> list[str]:
        """The primary key's columns in key order ([] if the table has none)."""

    @abc.abstractmethod
    def references(self, table: str) -> list[Reference]: ...

    @abc.abstractmethod
    def _cursor(self) -> Any: ...

    def _q(self, sql: str) -> str:
        return sql.replace("?", self._mark)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._cursor()
        try:
            cur.execute(self._q(sql), tuple(params))
            rows: list[tuple[Any, ...]] = cur.fetchall()
        finally:
            cur.close()
        return rows

    def version(self) -> tuple[int, str | None, int | None]:
        """(schema version, release that wrote it, when version 1 was applied) or (0, None, None)
        if the database holds no Modelyard schema."""
        if MIGRATIONS not in self.tables():
            return 0, None, None
        rows = self.query(f"SELECT version, modelyard_version, applied_ms FROM {MIGRATIONS}")
        if not rows:
            return 0, None, None
        latest = max(rows, key=lambda r: int(r[0]))
        first = min(rows, key=lambda r: int(r[0]))
        return int(latest[0]), str(latest[1]), int(first[2])

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {ident(table)}")[0][0])

    def has_rows(self, table: str) -> bool:
        return bool(self.query(f"SELECT 1 FROM {ident(table)} LIMIT 1"))

    # -- reading --------------------------------------------------------------------------------
    def rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        after: Sequence[Any] | None,
        chunk: int,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The table's rows in key order after the key ``after`` (all if None), in chunks."""
        sql = f"SELECT {', '.join(map(ident, columns))} FROM {ident(table)}"
        params: list[Any] = []
        if after is not None:
            sql += f" WHERE ({', '.join(map(ident, key))}) > ({', '.join('?' * len(key))})"
            params = list(after)
        if key:
            sql += f" ORDER BY {', '.join(map(ident, key))}"
        cur = self._reader(table)
        try:
            cur.execute(self._q(sql), tuple(params))
            while True:
                got = cur.fetchmany(chunk)
                if not got:
                    return
                yield got
        finally:
            cur.close()

    def _reader(self, table: str) -> Any:
        return self._cursor()

    # -- writing --------------------------------------------------------------------------------
    @abc.abstractmethod
    def write(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        mark: dict[str, Any],
    ) -> None:
        """Insert ``rows`` and update the marker row of ``table`` in one transaction."""

    def _set_mark(self, cur: Any, table: str, mark: dict[str, Any]) -> None:
        cur.execute(
            self._q(
                f"UPDATE {MARKER} SET last_key = ?, copied = ?, done = ?, updated_ms = ? "
                "WHERE table_name = ?"
            ),
            (
                None if mark["last_key"] is None else orjson.dumps(mark["last_key"]).decode(),
                mark["copied"],
                1 if mark["done"] else 0,
                mark["updated_ms"],
                table,
            ),
        )

    @abc.abstractmethod
    def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None: ...

    def start_marker(self, source_id: str, source: str, tables: Sequence[str], now: int) -> None:
        """Create the marker with a row per table, in one transaction."""
        self._transaction(
            [(_MARKER_TABLE, ())]
            + [
                (
                    f"INSERT INTO {MARKER} (table_name, source_id, source, last_key, copied, "
                    "done, updated_ms) VALUES (?, ?, ?, NULL, 0, 0, ?)",
                    (table, source_id, source, now),
                )
                for table in tables
            ]
        )

    def marker(self) -> dict[str, dict[str, Any]]:
        """The marker's rows by table ({} if there is no marker)."""
        if MARKER not in self.tables():
            return {}
        rows = self.query(
            f"SELECT table_name, source_id, source, last_key, copied, done FROM {MARKER}"
        )
        return {
            str(r[0]): {
                "source_id": str(r[1]),
                "source": str(r[2]),
                "last_key": None if r[3] is None else orjson.loads(r[3]),
                "copied": int(r[4]),
                "done": bool(r[5]),
            }
            for r in rows
        }

    def drop_marker(self) -> None:
        """Drop the marker in a durable commit, which makes every batch before it durable too
        (batches commit without waiting for the disk; see ``_durable``)."""
        self._durable()
        self._transaction([(f"DROP TABLE {MARKER}", ())])

    @abc.abstractmethod
    def _durable(self) -> None:
        """Make the next commits wait for the disk again."""

    def advance_sequences(self, tables: Sequence[str]) -> list[str]:
        """Make generated ids continue after the copied ones; the columns advanced."""
        return []

    @abc.abstractmethod
    def lock(self) -> None:
        """Be the only copy writing into this database until ``close``; Conflict if another
        copy is (two copies of one source would both write the same keys)."""

    def _busy(self, holder: str = "") -> Conflict:
        return Conflict(
            f"another 'modelyard store copy' into {self.location} is running{holder}; wait for "
            "it to finish (or stop it and run the copy again to continue it)",
            target=self.location,
        )

    @abc.abstractmethod
    def close(self, *, finished: bool = False) -> None:
        """Close the connection (and the lock); ``finished``: the copy is complete."""


class SQLiteSide(Side):
    dialect = "sqlite"

    def __init__(self, path: Path, *, source: bool) -> None:
        self.location = str(path)
        self._source = source
        try:
            if source:
                # Read-only: copying must not migrate or otherwise change the source.
                self._conn = sqlite3.connect(
                    f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None
                )
            else:
                self._conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
                # A committed batch survives a crash of this process (WAL), which is what resuming
                # needs; an operating-system crash may lose the last batches, marker included.
                # Until the marker is dropped (``_durable``), fsync only at checkpoints.
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA cache_size=-65536")
            if source:
                self._conn.execute("BEGIN")  # one snapshot for the whole copy
        except sqlite3.Error as exc:
            raise self.unavailable(exc) from exc

    def _durable(self) -> None:
        self._conn.execute("PRAGMA synchronous=FULL")

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"SQLite database {self.location} cannot be used ({exc.__class__.__name__}: {exc}); "
            "check the path and that no other process holds it locked",
            path=self.location,
        )

    def _cursor(self) -> Any:
        return self._conn.cursor()

    def tables(self) -> list[str]:
        return [
            str(r[0])
            for r in self.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            )
        ]

    def columns(self, table: str) -> list[str]:
        return [str(r[1]) for r in self.query(f"PRAGMA table_info({ident(table)})")]

    def primary_key(self, table: str) -> list[str]:
        info = self.query(f"PRAGMA table_info({ident(table)})")
        return [str(r[1]) for r in sorted((r for r in info if r[5]), key=lambda r: int(r[5]))]

    def references(self, table: str) -> list[Reference]:
        return [
            (str(r[3]), str(r[2]), str(r[4]))
            for r in self.query(f"PRAGMA foreign_key_list({ident(table)})")
        ]

    def write(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        mark: dict[str, Any],
    ) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                conn.executemany(
                    f"INSERT INTO {ident(table)} ({', '.join(map(ident, columns))}) "
                    f"VALUES ({', '.join('?' * len(columns))})",
                    rows,
                )
            self._set_mark(conn, table, mark)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                conn.execute(sql, tuple(params))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def lock(self) -> None:
        # SQLite has no lock outliving a transaction, so a file beside the database holds one
        # (flock: released by the system if this process dies).
        import fcntl

        path = Path(self.location + "-copylock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise self._busy(f" (pid {holder})" if holder else "") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd, self._lock_path = fd, path

    def close(self, *, finished: bool = False) -> None:
        if self._source and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._conn.close()
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            if finished:  # a finished target refuses any later copy: the lock is not needed
                self._lock_path.unlink(missing_ok=True)
            os.close(fd)


class PostgresSide(Side):
    dialect = "postgres"
    _mark = "%s"

    def __init__(self, url: str, location: str, *, source: bool) -> None:
        import psycopg

        self.location = location
        self._source = source
        self._named = 0
        try:
            self._conn: psycopg.Connection[Any] = psycopg.connect(
                url, autocommit=not source, connect_timeout=10
            )
            if source:
                # One snapshot for the whole copy, and nothing written by mistake.
                self._conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                self._conn.read_only = True
            else:
                # A batch commits without waiting for the WAL flush: a crash of the database
                # server may lose the last batches, but each with its marker row, so a run again
                # copies them again. The final commit (``drop_marker``) waits, and with it all.
                self._conn.execute("SET synchronous_commit = off")
        except psycopg.Error as exc:
            raise self.unavailable(exc) from exc

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"PostgreSQL at {self.location} failed ({exc.__class__.__name__}: "
            f"{str(exc).strip()}); check the URL, that the server is running and that the schema "
            "exists",
            location=self.location,
        )

    def _durable(self) -> None:
        self._conn.execute("SET synchronous_commit = on")

    def _cursor(self) -> Any:
        return self._conn.cursor()

    def _reader(self, table: str) -> Any:
        # A server-side cursor: the table streams in chunks instead of arriving whole.
        self._named += 1
        return self._conn.cursor(name=f"modelyard_copy_{self._named}")

    def tables(self) -> list[str]:
        return [
            str(r[0])
            for r in self.query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
        ]

    def columns(self, table: str) -> list[str]:
        return [
            str(r[0])
            for r in self.query(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ? "
                "ORDER BY ordinal_position",
                (table,),
            )
        ]

    def primary_key(self, table: str) -> list[str]:
        return [
            str(r[0])
            for r in self.query(
                "SELECT k.column_name FROM information_schema.table_constraints c "
                "JOIN information_schema.key_column_usage k "
                "ON k.constraint_schema = c.constraint_schema "
                "AND k.constraint_name = c.constraint_name "
                "WHERE c.table_schema = current_schema() AND c.table_name = ? "
                "AND c.constraint_type = 'PRIMARY KEY' ORDER BY k.ordinal_position",
                (table,),
            )
        ]

    def references(self, table: str) -> list[Reference]:
        return [
            (str(r[0]), str(r[1]), str(r[2]))
            for r in self.query(
                "SELECT k.column_name, u.table_name, u.column_name "
                "FROM information_schema.table_constraints c "
                "JOIN information_schema.key_column_usage k "
                "ON k.constraint_schema = c.constraint_schema "
                "AND k.constraint_name = c.constraint_name "
                "JOIN information_schema.constraint_column_usage u "
                "ON u.constraint_schema = c.constraint_schema "
                "AND u.constraint_name = c.constraint_name "
                "WHERE c.table_schema = current_schema() AND c.table_name = ? "
                "AND c.constraint_type = 'FOREIGN KEY'",
                (table,),
            )
        ]

    def write(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        mark: dict[str, Any],
    ) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            if rows:
                with cur.copy(
                    f"COPY {ident(table)} ({', '.join(map(ident, columns))}) FROM STDIN"
                ) as copy:
                    write_row = copy.write_row
                    for row in rows:
                        write_row(row)
            self._set_mark(cur, table, mark)

    def _transaction(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            for sql, params in statements:
                cur.execute(self._q(sql), tuple(params) or None)

    def advance_sequences(self, tables: Sequence[str]) -> list[str]:
        advanced = []
        for table in tables:
            generated = self.query(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ? "
                "AND (is_identity = 'YES' OR column_default LIKE 'nextval(%%')",
                (table,),
            )
            for (column,) in generated:
                # setval(seq, max): the next generated id is max + 1. An empty table keeps its
                # sequence as it is (nothing to step over).
                with self._conn.transaction(), self._conn.cursor() as cur:
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence(%s, %s), m) FROM "
                        f"(SELECT MAX({ident(column)}) AS m FROM {ident(table)}) s "
                        "WHERE m IS NOT NULL",
                        (ident(table), column),
                    )
                    if cur.fetchone() is not None:
                        advanced.append(f"{table}.{column}")
        return advanced

    def lock(self) -> None:
        # Session-level: held until the connection closes, even if this process dies. Keyed by
        # the schema, so copies into two schemas of one database do not exclude each other.
        got = self.query(
            "SELECT pg_try_advisory_lock(?, hashtext(current_schema()))", (_COPY_LOCK,)
        )
        if not got[0][0]:
            raise self._busy()

    def close(self, *, finished: bool = False) -> None:
        self._conn.close()
