"""The one TTL cache (modelyard.ttlcache): lifetime, invalidation, the bound, threads."""

from __future__ import annotations

import doctest
import threading

import pytest

import modelyard.ttlcache as ttlcache_mod
from modelyard.errors import InvalidInput
from modelyard.ttlcache import DEFAULT_TTL_S, TTLCache


class FakeClock:
    """A settable clock: ``clock()`` is the time, ``clock.advance(n)`` moves it on."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, amount: float) -> None:
        self.now += amount


def test_entries_live_for_the_ttl() -> None:
    ticks = FakeClock(0.0)
    cache: TTLCache[str] = TTLCache(2.0, ticks)
    cache.put("a", "A", cache.generation())
    ticks.advance(1.999)
    assert cache.get("a") == "A"
    ticks.advance(0.001)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_an_invalidation_wins_over_a_lookup_that_started_before_it() -> None:
    cache: TTLCache[str] = TTLCache(2.0, FakeClock(0.0))
    cache.put("keep", "K", cache.generation())
    started = cache.generation()  # a lookup reads the database...
    cache.discard_where(lambda v: v == "OLD")  # ...while the key is rotated
    cache.put("old", "OLD", started)  # the lookup's stale answer is not cached
    assert cache.get("old") is None
    assert cache.get("keep") == "K"
    cache.put("old", "NEW", cache.generation())
    assert cache.get("old") == "NEW"
    cache.clear()
    assert cache.get("keep") is None


def test_the_cache_stays_bounded() -> None:
    ticks = FakeClock(0.0)
    cache: TTLCache[int] = TTLCache(2.0, ticks, max_entries=10)
    for i in range(5):
        cache.put(f"old{i}", i, cache.generation())
    ticks.advance(3)  # the first five are stale now
    for i in range(100):
        cache.put(f"k{i}", i, cache.generation())
        assert len(cache) <= 10
    assert cache.get("k99") == 99


def test_when_full_the_oldest_entry_goes_first() -> None:
    ticks = FakeClock(0.0)
    cache: TTLCache[int] = TTLCache(60.0, ticks, max_entries=3)
    for i, key in enumerate("abc"):
        cache.put(key, i)
        ticks.advance(1)
    cache.put("a", 10)  # stored again: now the newest
    cache.put("d", 3)  # full: "b", the oldest, makes room
    assert len(cache) == 3
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), cache.get("d")) == (10, 2, 3)


def test_put_without_a_generation_always_stores_and_discard_drops_one_key() -> None:
    cache: TTLCache[str] = TTLCache(2.0, FakeClock(0.0))
    cache.put("a", "A")
    cache.put("b", "B")
    started = cache.generation()
    cache.discard("a")
    assert cache.get("a") is None and cache.get("b") == "B"
    cache.put("a", "OLD", started)  # read before the discard: not kept
    assert cache.get("a") is None


def test_a_zero_ttl_keeps_nothing_and_the_defaults() -> None:
    cache: TTLCache[str] = TTLCache(0.0)
    cache.put("a", "A")
    assert cache.get("a") is None
    assert TTLCache[str]().ttl_s == DEFAULT_TTL_S == 2.0
    with pytest.raises(InvalidInput, match="max_entries=0"):
        TTLCache[str](max_entries=0)


def test_threads_sharing_one_cache_keep_it_consistent_and_bounded() -> None:
    cache: TTLCache[int] = TTLCache(60.0, max_entries=50)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(2_000):
                key = f"k{(n * 7 + i) % 120}"
                cache.put(key, i, cache.generation())
                value = cache.get(key)
                assert value is None or isinstance(value, int)
                assert len(cache) <= 50
                if i % 250 == 0:
                    cache.discard_where(lambda v: v % 2 == 0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert 0 < len(cache) <= 50
    cache.put("last", 1)
    assert cache.get("last") == 1


def test_the_example_runs() -> None:
    result = doctest.testmod(ttlcache_mod, raise_on_error=False)
    assert result.attempted >= 1 and result.failed == 0
