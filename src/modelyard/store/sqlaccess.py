"""The store's small public seam for other parts that keep their tables in the store's database.

The registry (models, builds, deployments, keys) lives in the same database as the metrics, under
the same migration series, so it must run SQL through the store's own connections: one writer
(SQLite allows one per file, and the store already holds it), the same busy/retry policy, the same
placeholder style. These four functions expose exactly that and nothing else, so the SQL store
classes keep their internals private and a caller cannot open a second, competing writer.

Statements are written with ``?`` placeholders; pass them through ``sql(store, text)`` (PostgreSQL
wants ``%s``). Keep literal ``%`` and ``?`` characters out of statement text.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

from modelyard.errors import InvalidInput
from modelyard.store.base import MetricsStore
from modelyard.store.sqlbase import Cursor, SQLStore

__all__ = ["Cursor", "dialect", "reading", "sql", "transaction"]

T = TypeVar("T")


def _sql_store(store: MetricsStore) -> SQLStore:
    if not isinstance(store, SQLStore):
        raise InvalidInput(
            f"store {store!r} keeps no SQL database; the registry needs an SQL store: "
            "SQLiteStore (a file or ':memory:') or PostgresStore, e.g. from open_store()",
            store=type(store).__name__,
        )
    return store


def transaction(store: MetricsStore, fn: Callable[[Cursor], T]) -> T:
    """Run ``fn(cursor)`` in one write transaction of ``store`` and return its result.

    The store's locking and busy-retry apply: ``fn`` may run more than once, so it must have no
    effect outside the database. An exception from ``fn`` rolls the transaction back and reaches
    the caller unchanged (driver errors become ``StoreUnavailable``).
    """
    return _sql_store(store)._write(fn)


def reading(store: MetricsStore) -> AbstractContextManager[Cursor]:
    """A cursor inside one read transaction of ``store`` (one snapshot for the whole block)."""
    return _sql_store(store)._reading()


def sql(store: MetricsStore, text: str) -> str:
    """``text`` (written with ``?`` placeholders) in the placeholder style of ``store``'s driver."""
    return _sql_store(store)._q(text)


def dialect(store: MetricsStore) -> str:
    """``'sqlite'`` or ``'postgres'``: which migration files and SQL dialect ``store`` uses."""
    return _sql_store(store).dialect
