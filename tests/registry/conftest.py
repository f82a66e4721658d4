"""Registries for the contract tests: on a SQLite file, SQLite in memory and PostgreSQL.

Clocks are injected: ``clock`` (epoch ms, key expiry and timestamps) and ``ticks`` (seconds, the
age of cache entries), so expiry and cache freshness are tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelyard.registry import Registry
from modelyard.store import MetricsStore
from modelyard.store.postgres import PostgresStore
from modelyard.store.sqlite import SQLiteStore

T0 = 1_790_000_000_000  # 2026-09-21T...Z

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("memory", id="memory"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
PERSISTENT = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

StoreOpener = Callable[[], MetricsStore]


class FakeClock:
    """A settable clock: ``clock()`` is the time, ``clock.advance(n)`` moves it on."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, amount: float) -> None:
        self.now += amount


class MsClock(FakeClock):
    def __call__(self) -> int:  # type: ignore[override]
        return int(self.now)


def store_opener(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreOpener:
    if kind == "sqlite":
        path = tmp_path / "registry.db"
        return lambda: SQLiteStore(path)
    if kind == "memory":
        return lambda: SQLiteStore(":memory:")
    url: str = request.getfixturevalue("postgres_schema_url")
    return lambda: PostgresStore(url)


@pytest.fixture
def clock() -> MsClock:
    return MsClock(T0)


@pytest.fixture
def ticks() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetricsStore]:
    opened = store_opener(request.param, request, tmp_path)()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def registry(store: MetricsStore, clock: MsClock, ticks: FakeClock) -> Registry:
    return Registry(store, clock=clock, monotonic=ticks)


@pytest.fixture(params=PERSISTENT)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> StoreOpener:
    """Opens another store object on the same database each call (close what you open)."""
    return store_opener(request.param, request, tmp_path)
