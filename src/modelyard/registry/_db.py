"""The registry's handle on the store's database, through the store's public SQL seam."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

from modelyard.store.base import MetricsStore
from modelyard.store.sqlaccess import Cursor, dialect, reading, sql, transaction

__all__ = ["Clock", "Cursor", "Db", "format_ms"]

T = TypeVar("T")
Clock = Callable[[], int]


def format_ms(ms: int) -> str:
    """An epoch-milliseconds instant as ISO 8601 UTC, for messages."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


class Db:
    """``write``/``read`` transactions and ``exec`` with placeholder translation.

    ``for_update`` is appended to a SELECT that reads a row the transaction then changes: on
    PostgreSQL (read committed) it locks the row so concurrent transactions queue instead of
    overwriting each other; SQLite write transactions are already serial (BEGIN IMMEDIATE).
    """

    def __init__(self, store: MetricsStore) -> None:
        self.store = store
        self.dialect = dialect(store)
        self.for_update = " FOR UPDATE" if self.dialect == "postgres" else ""

    def write(self, fn: Callable[[Cursor], T]) -> T:
        return transaction(self.store, fn)

    def read(self) -> AbstractContextManager[Cursor]:
        return reading(self.store)

    def exec(self, cur: Cursor, text: str, params: Sequence[Any] = ()) -> Cursor:
        cur.execute(sql(self.store, text), tuple(params))
        return cur

    def insert_id(self, cur: Cursor, text: str, params: Sequence[Any]) -> int:
        """Run an INSERT into a table with an integer ``id`` key and return the new id."""
        if self.dialect == "postgres":
            return int(self.exec(cur, text + " RETURNING id", params).fetchone()[0])
        return int(self.exec(cur, text, params).lastrowid)
