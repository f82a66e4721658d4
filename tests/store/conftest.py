"""Backends for the store contract tests: SQLite file, SQLite in memory, PostgreSQL.

``store`` is an open store of each backend; ``store_opener`` opens a store on the same database
again (None for ``:memory:``, which lives and dies with its one store object).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelyard.store import MetricsStore
from modelyard.store.postgres import PostgresStore
from modelyard.store.sqlite import SQLiteStore

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


def _opener(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    if kind == "sqlite":
        path = tmp_path / "store.db"
        return lambda: SQLiteStore(path)
    if kind == "memory":
        return lambda: SQLiteStore(":memory:")
    url: str = request.getfixturevalue("postgres_schema_url")
    return lambda: PostgresStore(url)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetricsStore]:
    opened = _opener(request.param, request, tmp_path)()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=PERSISTENT)
def store_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a new store object on the same database each call (close what you open)."""
    return _opener(request.param, request, tmp_path)
