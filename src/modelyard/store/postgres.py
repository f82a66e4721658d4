"""The production metrics store on PostgreSQL (psycopg 3).

One connection per store, shared by threads behind a lock (psycopg connections are thread-safe
but a transaction belongs to the connection, so each transaction holds the lock while it runs).
Batches go in with binary ``COPY ... FROM STDIN``, the fastest route the server offers. Transactions
that change rollup buckets take a transaction-scoped advisory lock, and raw rows being folded are
locked ``FOR UPDATE``, so two rollups (or a rollup and a delayed value) never interleave: a value
is folded exactly once whichever process runs maintenance.

psycopg is imported when a store is opened, not when ``modelyard`` is imported.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from modelyard.errors import ModelyardError, StoreUnavailable
from modelyard.store.sqlbase import Cursor, SQLStore

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore"]

T = TypeVar("T")
# Any constant works; it only has to be the same in every Modelyard process.
_BUCKET_LOCK = 0x4D59_5244  # "MYRD"
_MIGRATION_LOCK = 0x4D59_4D47  # "MYMG"
_RETRIES = 5


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class PostgresStore(SQLStore):
    """``PostgresStore("postgresql://user@host:5432/db")`` connects and migrates the schema."""

    backend = "postgres"
    dialect = "postgres"
    _placeholder = "%s"
    _for_update = " FOR UPDATE"
    # The server computes a scan page while the client decodes the last one (readahead.py).
    _read_ahead = True

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        super().__init__()
        self.url = url
        self.location = _redact(url)
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._scan_lock = threading.Lock()
        self._scan_conn: psycopg.Connection[Any] | None = None  # opened by the first scan
        self._closed = False
        self._conn = self._connect()
        try:
            self._check_schema()
            self._write(self._migrate)
        except ModelyardError:
            self.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a dependency
            raise StoreUnavailable(
                "PostgreSQL needs psycopg 3; install it with pip install 'psycopg[binary]'"
            ) from exc
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=self._connect_timeout)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self.location} ({exc.__class__.__name__}: "
                f"{str(exc).strip()}); check the server is running and MODELYARD_DATABASE_URL",
                location=self.location,
            ) from exc

    def _check_schema(self) -> None:
        """Refuse, saying which SQL fixes it, a connection whose search_path names no schema
        that exists (a schema per installation, ``options=-csearch_path=NAME``, not created yet).

        PostgreSQL itself only says "no schema has been selected to create in" at the first
        CREATE TABLE, which names neither the schema nor the way out.
        """
        import psycopg
        from psycopg import sql

        try:
            row = self._conn.execute(
                "SELECT current_schema(), current_setting('search_path'), current_user"
            ).fetchone()
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        assert row is not None
        current, search_path, user = row
        if current is not None:
            return
        names = [n.strip().strip('"') for n in str(search_path).split(",") if n.strip()]
        wanted = next((n for n in names if n != "$user"), user)
        create = sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
            sql.Identifier(wanted), sql.Identifier(user)
        )
        raise StoreUnavailable(
            f"PostgreSQL at {self.location}: schema {wanted!r} does not exist (search_path is "
            f"{search_path!r}, and none of its schemas exists), so Modelyard has nowhere to create "
            f"its tables; create it once, as a role allowed to: {create.as_string(self._conn)}; "
            "or leave search_path out of the URL to use the database's default schema",
            location=self.location,
            schema=wanted,
        )

    def _migrate(self, cur: Cursor) -> int:
        # Processes starting together must not apply the same migration twice.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        return self._apply_migrations(cur)

    def _lock_buckets(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_BUCKET_LOCK,))

    def _prefer_index_order(self, cur: Cursor) -> None:
        # Right after a bulk load the table has no statistics yet; the planner then guesses a
        # dozen rows and sorts the whole window (on disk) for every page. The window index
        # already yields (start_ms, uuid) order, so forbid the sort for this transaction.
        cur.execute("SET LOCAL enable_sort = off")

    def _scan_read(self, fn: Callable[[Cursor], T]) -> T:
        """``fn`` on the scan connection: a second connection, in autocommit, that only reads
        scan pages. A page is then one statement, one round trip (not four with BEGIN, SET
        LOCAL and COMMIT), and ``scan``'s thread reading ahead (``readahead.py``) waits neither
        on this store's lock nor on the GIL between them. Its session never sorts a page
        (``_prefer_index_order``). A connection the server dropped is replaced once; a page is
        a read, so running it again is safe."""
        import psycopg

        with self._scan_lock:
            retried = False
            while True:
                conn = self._scan_conn
                try:
                    if conn is None or conn.closed or conn.broken:
                        if self._closed:
                            raise StoreUnavailable(
                                f"the PostgreSQL store at {self.location} is closed"
                            )
                        conn = self._scan_conn = self._connect()
                        conn.execute("SET enable_sort = off")
                    with conn.cursor() as cur:
                        return fn(cur)
                except psycopg.OperationalError as exc:
                    if retried or conn is None or not conn.broken:
                        raise self._unavailable(exc) from exc
                    retried = True
                except psycopg.Error as exc:
                    raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"PostgreSQL at {self.location} failed ({exc.__class__.__name__}: "
            f"{str(exc).strip()}); check the server and retry",
            location=self.location,
        )

    def _ensure_connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StoreUnavailable(f"the PostgreSQL store at {self.location} is closed")
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _begin(self, stack: ExitStack) -> psycopg.Connection[Any]:
        """A transaction begun (on ``stack``) on a live connection. A connection the server
        dropped since its last use (PostgreSQL restarted) fails at ``BEGIN``, before any of the
        caller's statements: it is replaced once there, so the first read after a restart
        does not fail."""
        import psycopg

        conn = self._ensure_connection()
        try:
            stack.enter_context(conn.transaction())
        except psycopg.OperationalError:
            if not conn.broken:
                raise
            conn = self._ensure_connection()  # reconnects (StoreUnavailable if it cannot)
            stack.enter_context(conn.transaction())
        return conn

    @contextmanager
    def _reading(self) -> Iterator[Cursor]:
        import psycopg

        with self._lock:
            try:
                with ExitStack() as stack:
                    conn = self._begin(stack)
                    yield stack.enter_context(conn.cursor())
            except psycopg.Error as exc:
                raise self._unavailable(exc) from exc

    def _write(self, fn: Callable[[Cursor], T]) -> T:
        import psycopg

        for attempt in range(_RETRIES):
            with self._lock:
                conn = self._ensure_connection()
                try:
                    with conn.transaction(), conn.cursor() as cur:
                        return fn(cur)
                except (
                    psycopg.errors.SerializationFailure,
                    psycopg.errors.DeadlockDetected,
                ) as exc:
                    if attempt == _RETRIES - 1:
                        raise self._unavailable(exc) from exc
                except psycopg.OperationalError as exc:
                    # A dropped connection: reconnect and retry the whole transaction.
                    if attempt == _RETRIES - 1 or not conn.broken:
                        raise self._unavailable(exc) from exc
                except psycopg.Error as exc:  # as in SQLite: driver errors are StoreUnavailable
                    raise self._unavailable(exc) from exc
            time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _insert_rows(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        # The uuid index first: a duplicate fails before the larger copy is sent. Binary COPY:
        # the server parses no digits and no escapes, and ``numbers`` goes as raw bytes rather
        # than hex text (measured: 1.23x the rate of text COPY; docs/store.md, "Ingest as the
        # store grows").
        with cur.copy(
            "COPY prediction_uuids (deployment_id, start_ms, uuid) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "text"])
            write_row = copy.write_row
            for row in rows:
                write_row(row[:3])
        with cur.copy(
            "COPY predictions (deployment_id, start_ms, uuid, end_ms, metrics, layout_id, numbers) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "text", "int8", "text", "int8", "bytea"])
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    def _delete_folded(self, cur: Cursor, dep_id: int, keys: list[tuple[int, str]]) -> None:
        # By key, not by range: under READ COMMITTED a row another transaction commits inside
        # the range meanwhile would be deleted without having been folded.
        cur.executemany(
            "DELETE FROM predictions WHERE deployment_id = %s AND start_ms = %s AND uuid = %s",
            [(dep_id, start, uuid) for start, uuid in keys],
        )

    def _is_unique_violation(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.UniqueViolation)

    def _size_bytes(self) -> int | None:
        with self._reading() as cur:
            row = cur.execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname = ANY(%s)",
                (
                    [
                        "identities",
                        "metric_layouts",
                        "predictions",
                        "delayed_metrics",
                        "aggregates",
                        "rollup_buckets",
                        "prediction_uuids",
                        "schema_migrations",
                    ],
                ),
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
        with self._scan_lock:
            if self._scan_conn is not None:
                self._scan_conn.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"
