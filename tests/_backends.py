"""The store backends contract tests run on: SQLite file, SQLite in memory, PostgreSQL.

Shared by the store and registry tests, which check one contract over every backend. Their
conftests import the fixtures: ``store`` is an open store of each backend; ``store_opener`` opens
another store object on the same database each call (SQLite file and PostgreSQL only: a
``:memory:`` database lives and dies with its one store object).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from modelyard.store import MetricsStore
from modelyard.store.postgres import PostgresStore
from modelyard.store.sqlite import SQLiteStore

__all__ = [
    "BACKENDS",
    "PERSISTENT",
    "Opener",
    "open_stores",
    "opener_for",
    "store",
    "store_opener",
]

Opener = Callable[[], MetricsStore]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("memory", id="memory"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
PERSISTENT = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def opener_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a store of backend ``kind``; PostgreSQL gets the test's fresh schema."""
    if kind == "sqlite":
        path = tmp_path / "store.db"
        return lambda: SQLiteStore(path)
    if kind == "memory":
        return lambda: SQLiteStore(":memory:")
    url: str = request.getfixturevalue("postgres_schema_url")
    return lambda: PostgresStore(url)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetricsStore]:
    opened = opener_for(request.param, request, tmp_path)()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=PERSISTENT)
def store_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a new store object on the same database each call (close what you open)."""
    return opener_for(request.param, request, tmp_path)


@contextmanager
def open_stores(opener: Opener, n: int) -> Iterator[list[MetricsStore]]:
    """``n`` store objects on one database, as ``n`` server processes hold; closed at the end."""
    stores = [opener() for _ in range(n)]
    try:
        yield stores
    finally:
        for s in stores:
            s.close()
