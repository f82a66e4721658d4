"""Registries for the contract tests: on a SQLite file, SQLite in memory and PostgreSQL.

Clocks are injected: ``clock`` (epoch ms, key expiry and timestamps) and ``ticks`` (seconds, the
age of cache entries), so expiry and cache freshness are tested without sleeping.
"""

from __future__ import annotations

import pytest

from _backends import Opener, store, store_opener
from modelyard.registry import Registry
from modelyard.store import MetricsStore

__all__ = ["store", "store_opener"]  # fixtures from tests/_backends.py, for pytest to find here

T0 = 1_790_000_000_000  # 2026-09-21T...Z

StoreOpener = Opener


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


@pytest.fixture
def clock() -> MsClock:
    return MsClock(T0)


@pytest.fixture
def ticks() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def registry(store: MetricsStore, clock: MsClock, ticks: FakeClock) -> Registry:
    return Registry(store, clock=clock, monotonic=ticks)


@pytest.fixture
def opener(store_opener: StoreOpener) -> StoreOpener:
    """Opens another store object on the same database each call (close what you open)."""
    return store_opener
