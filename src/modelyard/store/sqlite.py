"""The embedded metrics store: one SQLite file in WAL mode, or ``:memory:`` for dev mode.

Concurrency. All writes of one store go through one connection guarded by a lock, each in a
``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so a transaction never has to
upgrade a read lock (which SQLite cannot wait for). Other processes writing the same file wait on
SQLite's busy timeout, and the whole transaction is retried with back-off until ``timeout`` has
passed; only then does the caller get ``StoreUnavailable``. Reads use one connection per thread
(WAL lets them run while a write is in progress). ``:memory:`` databases exist per connection, so
there a single connection serves every thread, behind the same lock.

Opening a connection (``PRAGMA journal_mode=WAL``) and starting a read wait for a lock the same
way, up to ``timeout``: in WAL mode they only meet one when another connection holds the file
exclusively, which the last connection to close does while it checkpoints the whole WAL (up to
64 MB, see ``wal_autocheckpoint`` below) into the database. On a loaded machine that took more
than SQLite's 5 s busy timeout, and a process opening the store then failed, saying the file
had been locked for ``timeout`` (30 s) when it had waited 5 s. ``close`` first copies the
WAL with a passive checkpoint, which holds no lock anyone waits for, so the exclusive one at the
end has little left to do.

Durability: ``synchronous="FULL"`` by default, so a committed transaction survives a power cut,
not only a process crash. Writes are batched one level up (``modelyard.store.writer``), so the
fsync per commit is paid once per batch; single small transactions (one ``add_delayed`` each) pay
it every time: about 290/s on a shared virtual disk, against 14,000/s with
``synchronous="NORMAL"``, which still survives a process crash but may lose the last commits to
an operating-system crash or power cut (never corrupting the file). Choose with the
``synchronous`` argument.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from modelyard.backoff import Backoff
from modelyard.errors import InvalidInput, ModelyardError, StoreUnavailable
from modelyard.homedir import make_private_file, make_private_folder
from modelyard.store.schema import SCHEMA_VERSION
from modelyard.store.sqlbase import Cursor, SQLStore

__all__ = ["SQLiteStore"]

T = TypeVar("T")
MEMORY = ":memory:"

# Rows go in ``_ROWS_PER_INSERT`` at a time, one multi-row INSERT per group (the statement is
# stepped and reset once per group, and one cursor walks the B-tree for the whole group), the
# uuid index's rows sorted by uuid first, so that a group's keys share leaf pages and the cursor
# moves on from where the last key went. Measured with 10-metric records, uuid4 ids, batches of
# 10,000: about a third less CPU per row on each table than one row per statement. (Multi-row
# inserts of unsorted random uuids cost more than single rows, so the sort is what makes the
# uuid index gain.) 100 rows x 7 columns = 700 parameters, under SQLite's smallest default limit
# (999).
_ROWS_PER_INSERT = 100
_PREDICTION_COLUMNS = 7
_INSERT_UUIDS = "INSERT INTO prediction_uuids (deployment_id, start_ms, uuid) VALUES "
_ONE_UUID = "(?, ?, ?)"
_by_uuid = itemgetter(2)
_INSERT_PREDICTIONS = (
    "INSERT INTO predictions (deployment_id, start_ms, uuid, end_ms, metrics, layout_id, numbers) "
    "VALUES "
)
_ONE_ROW = "(?, ?, ?, ?, ?, ?, ?)"
_INSERT_ONE = _INSERT_PREDICTIONS + _ONE_ROW
_INSERT_GROUP = _INSERT_PREDICTIONS + ", ".join([_ONE_ROW] * _ROWS_PER_INSERT)
_INSERT_UUID_GROUP = _INSERT_UUIDS + ", ".join([_ONE_UUID] * _ROWS_PER_INSERT)

# Waits between tries of a write that found the database busy: 5 ms doubling to 250 ms, +-50 %.
_BUSY_BACKOFF = Backoff(base_s=0.005, cap_s=0.25, jitter=0.5)


# Any read starts a WAL read transaction's snapshot; this one reads only the header page.
_FIRST_READ = "SELECT 1 FROM sqlite_master LIMIT 1"


def _is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


class SQLiteStore(SQLStore):
    """``SQLiteStore(path)`` opens (creating if needed) the store at ``path``.

    >>> from modelyard.store.schema import SCHEMA_VERSION
    >>> with SQLiteStore(":memory:") as store:
    ...     store.info().schema_version == SCHEMA_VERSION  # the newest migration, applied on open
    True
    """

    backend = "sqlite"
    dialect = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        synchronous: str = "FULL",
    ) -> None:
        super().__init__()
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise InvalidInput(
                f"timeout={timeout!r} must be a number of seconds >= 0 to wait for a lock"
            )
        if synchronous not in ("FULL", "NORMAL"):
            raise InvalidInput(
                f"synchronous={synchronous!r} is not supported; use 'FULL' (survives power loss) "
                "or 'NORMAL' (survives a process crash, much faster single writes)"
            )
        self._synchronous = synchronous
        self._memory = str(path) == MEMORY
        self.path = str(path) if self._memory else str(Path(path).expanduser())
        self.location = self.path
        self._timeout = float(timeout)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        if not self._memory:
            # Private whoever opens it first (the server, the CLI or the SDK): the folder 0700
            # if it is new, the database 0600, and SQLite gives -wal and -shm the database's mode.
            make_private_folder(Path(self.path).parent, "database folder")
            with suppress(OSError):  # unwritable or not a file: SQLite's error says so below
                make_private_file(self.path)
        self._conn = self._connect(writer=True)
        self._migrate()

    # -- connections ----------------------------------------------------------------------------
    def _connect(self, *, writer: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=min(self._timeout, 5.0),
                isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE / COMMIT)
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        try:
            if not self._memory:
                wal = self._until_free(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
                mode = wal[0]
                if str(mode).lower() != "wal":
                    raise StoreUnavailable(
                        f"SQLite at {self.path} could not switch to WAL mode (got {mode!r}); "
                        "put MODELYARD_HOME on a local disk that supports shared memory"
                    )
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            if writer:
                # A batch of random (uuid4) ids touches pages all over the uuid index; a larger
                # cache and a 64 MB WAL between checkpoints let commits share page writes
                # (measured: about twice the ingest rate at a million records than the
                # defaults). Ids Modelyard mints are time-ordered and append (docs/store.md).
                conn.execute("PRAGMA cache_size=-65536")
                conn.execute("PRAGMA wal_autocheckpoint=16384")
        except sqlite3.Error as exc:
            conn.close()
            raise self._unavailable(exc) from exc
        return conn

    def _until_free(self, step: Callable[[], T]) -> T:
        """``step()``, tried again with back-off while the file is locked, until ``timeout``."""
        deadline = time.monotonic() + self._timeout
        delays = _BUSY_BACKOFF.delays()
        while True:
            try:
                return step()
            except sqlite3.Error as exc:
                if not (_is_busy(exc) and time.monotonic() < deadline):
                    raise
            time.sleep(next(delays))

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        """Translate a driver error into a message that says what to do."""
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return StoreUnavailable(
                f"{self.path} is not a SQLite database ({text}); move it aside or set "
                "MODELYARD_HOME to another folder",
                path=self.path,
            )
        if _is_busy(exc):
            return StoreUnavailable(
                f"SQLite database {self.path} stayed locked by another connection for more than "
                f"{self._timeout:g}s ({text}); stop the process holding it or retry later",
                path=self.path,
            )
        return StoreUnavailable(
            f"SQLite database {self.path} cannot be used ({exc.__class__.__name__}: {text}); "
            "check the folder exists and is writable, or set MODELYARD_HOME to another folder",
            path=self.path,
        )

    def _migrate(self) -> None:
        try:
            with self._reading() as cur:
                exists = cur.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"
                ).fetchone()
                version = self._schema_version(cur)[0] if exists else 0
        except StoreUnavailable:
            self.close()
            raise
        if version == SCHEMA_VERSION:
            return
        try:
            self._write(self._apply_migrations)
        except ModelyardError:
            self.close()
            raise

    @contextmanager
    def _reading(self) -> Iterator[Cursor]:
        if self._closed:
            raise StoreUnavailable(f"the SQLite store at {self.path} is closed; open a new one")
        if self._memory:
            with self._lock:
                yield from self._read_in(self._conn)
            return
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        yield from self._read_in(conn)

    def _read_in(self, conn: sqlite3.Connection) -> Iterator[Cursor]:
        try:
            if conn.in_transaction:  # left open by a failed COMMIT: start clean
                conn.execute("ROLLBACK")
            conn.execute("BEGIN")
            # The snapshot is taken at the first read: taken here, waiting out an exclusive
            # lock (a closing connection's checkpoint) up to ``timeout``, not SQLite's 5 s.
            self._until_free(lambda: conn.execute(_FIRST_READ).fetchone())
            try:
                yield conn.cursor()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def _write(self, fn: Callable[[Cursor], T]) -> T:
        deadline = time.monotonic() + self._timeout
        delays = _BUSY_BACKOFF.delays()
        while True:
            with self._lock:
                if self._closed:
                    raise StoreUnavailable(
                        f"the SQLite store at {self.path} is closed; open a new one"
                    )
                conn = self._conn
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    if not (_is_busy(exc) and time.monotonic() < deadline):
                        raise self._unavailable(exc) from exc
                else:
                    try:
                        result = fn(conn.cursor())
                        conn.execute("COMMIT")
                        return result
                    except BaseException as exc:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        if isinstance(exc, sqlite3.Error):
                            if _is_busy(exc) and time.monotonic() < deadline:
                                pass  # retried below, outside the lock
                            else:
                                raise self._unavailable(exc) from exc
                        else:
                            raise
            time.sleep(next(delays))

    def _insert_rows(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        # The uuid index first: a duplicate fails before the larger insert is done.
        size = _ROWS_PER_INSERT
        grouped = len(rows) - len(rows) % size
        by_uuid = sorted(rows, key=_by_uuid)
        cur.executemany(
            _INSERT_UUID_GROUP,
            [
                [x for row in by_uuid[i : i + size] for x in row[:3]]
                for i in range(0, grouped, size)
            ],
        )
        cur.executemany(_INSERT_UUIDS + _ONE_UUID, [row[:3] for row in by_uuid[grouped:]])
        flat = list(chain.from_iterable(rows[:grouped]))
        step = size * _PREDICTION_COLUMNS
        cur.executemany(_INSERT_GROUP, [flat[i : i + step] for i in range(0, len(flat), step)])
        cur.executemany(_INSERT_ONE, rows[grouped:])

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def _size_bytes(self) -> int | None:
        if self._memory:
            with self._reading() as cur:
                pages = cur.execute("PRAGMA page_count").fetchone()[0]
                size = cur.execute("PRAGMA page_size").fetchone()[0]
            return int(pages) * int(size)
        total = 0
        for suffix in ("", "-wal"):
            with suppress(OSError):  # no -wal file right after a checkpoint
                total += os.path.getsize(self.path + suffix)
        return total

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            if not self._memory:
                # Copy the WAL into the database now, holding no lock others wait for; the
                # checkpoint SQLite runs (exclusively) when the last connection closes is then
                # short. Busy (another checkpoint runs) or failing: closing goes on regardless.
                with suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
