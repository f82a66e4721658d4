"""Whether the server's store answers, for ``/healthz`` and the dashboard's "store is down" banner.

A daemon thread runs ``SELECT 1`` every ``interval_s`` (1 s); ``/healthz`` and the dashboard
only read the last result, so they never wait on the database themselves. On PostgreSQL the probe
keeps a connection of its own (so it never queues behind the store's long transactions, and it
says whether the database answers, not whether this process is busy); on SQLite it reads through
the store. The store is *unavailable* when the last probe failed, or when a probe has been
waiting longer than ``stuck_s`` (5 s: a database that accepts connections but does not answer).
Each change is logged once (an error when the store goes, a warning when it is back).

While the store is unavailable the predict path goes on: answers come from the replicas, their
records wait in the writer (and the journal under ``<home>/journal``) until the store is back,
and the key and model lookups answer from their last known values (``TTLCache.stale``).

>>> from modelyard.store import open_store
>>> store = open_store("sqlite:///:memory:")
>>> health = StoreHealth(store)
>>> health.probe()
>>> health.report()["store"]
'ok'
>>> store.close()
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from modelyard.clock import now_ms
from modelyard.errors import StoreUnavailable
from modelyard.store import Journal, MetricsStore
from modelyard.store.sqlaccess import reading

__all__ = ["StoreHealth"]

log = logging.getLogger("modelyard.server")


class StoreHealth:
    """The last probe of ``store``; ``start()`` probes on a thread until ``stop()``.

    ``backlog`` (optional) says how many prediction records wait to be written (the writer's
    ``pending``), ``journal`` (optional) holds them on disk meanwhile; both are reported as is
    (``pending_records``, ``journal_bytes``).
    """

    def __init__(
        self,
        store: MetricsStore,
        *,
        interval_s: float = 1.0,
        stuck_s: float = 5.0,
        backlog: Callable[[], int] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self._store = store
        self._journal = journal
        self.interval_s = interval_s
        self.stuck_s = stuck_s
        self._backlog = backlog
        self._lock = threading.Lock()
        self._ok = True
        self._since_ms = now_ms()  # when the current state began
        self._error: str | None = None
        self._probing_since: float | None = None  # monotonic, while a probe runs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None  # the probe's own PostgreSQL connection, while it works

    # -- probing -------------------------------------------------------------------------------
    def probe(self) -> None:
        """Read ``SELECT 1`` through the store now and record the outcome."""
        with self._lock:
            self._probing_since = time.monotonic()
        error: str | None = None
        try:
            self._select_one()
        except Exception as exc:  # any failure means: the store does not answer
            error = f"{exc.__class__.__name__}: {exc}"
        self._record(error)

    def _select_one(self) -> None:
        url = getattr(self._store, "url", None)
        if getattr(self._store, "backend", None) != "postgres" or not isinstance(url, str):
            with reading(self._store) as cur:
                cur.execute("SELECT 1").fetchone()
            return
        import psycopg

        location = getattr(self._store, "location", "")
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(
                    url, autocommit=True, connect_timeout=max(1, round(self.stuck_s))
                )
            self._conn.execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            self._close_connection()
            raise StoreUnavailable(
                f"PostgreSQL at {location} does not answer ({exc.__class__.__name__}: "
                f"{str(exc).strip()})"
            ) from exc

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _record(self, error: str | None) -> None:
        with self._lock:
            self._probing_since = None
            was_ok, self._ok = self._ok, error is None
            self._error = error
            if was_ok == self._ok:
                return
            began = self._since_ms
            self._since_ms = now_ms()
        if error is not None:
            log.error(
                "the store is unavailable (%s); predictions are still answered and their "
                "records wait to be written until it is back",
                error,
            )
        else:
            log.warning(
                "the store answers again after %.1f s unavailable; waiting records are being "
                "written",
                (now_ms() - began) / 1000,
            )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="modelyard-store-health", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.stuck_s + self.interval_s)
        if self._thread is None or not self._thread.is_alive():
            self._close_connection()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.probe()

    # -- reading -------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """False when the last probe failed or the current one waits longer than ``stuck_s``."""
        with self._lock:
            return self._ok and not self._stuck()

    def _stuck(self) -> bool:
        started = self._probing_since
        return started is not None and time.monotonic() - started > self.stuck_s

    def report(self, *, detail: bool = False) -> dict[str, Any]:
        """``{"store": "ok" | "unavailable", "since_ms": ..., "pending_records": ...}``;
        ``detail`` adds the last error (for signed-in users and logs, not ``/healthz``)."""
        with self._lock:
            ok = self._ok and not self._stuck()
            stuck = self._ok and not ok
            since_ms = self._since_ms
            error = self._error
        out: dict[str, Any] = {"store": "ok" if ok else "unavailable", "since_ms": since_ms}
        if self._backlog is not None:
            out["pending_records"] = self._backlog()
        if self._journal is not None:
            out["journal_bytes"] = self._journal.pending_bytes
        if detail and not ok:
            out["error"] = (
                f"no answer to a probe within {self.stuck_s:g} s" if stuck else error or ""
            )
        return out
