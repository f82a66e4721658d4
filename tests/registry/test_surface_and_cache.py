"""The registry's public names, and the lookup cache's rules (TTL, invalidation, bound)."""

from __future__ import annotations

import hashlib

import modelyard.registry
from modelyard.registry._cache import TTLCache
from modelyard.registry._keys import display_prefix, hash_token, new_token, same_hash

from .conftest import FakeClock

EXPECTED = [
    "ACCESS_KEY_PREFIX",
    "API_KEY_PREFIX",
    "DEFAULT_TTL_S",
    "MODEL_NAME_RULE",
    "RUN_SCOPE_PREFIX",
    "SETTINGS_BOUNDS",
    "YEAR_MS",
    "ApiKey",
    "Build",
    "CatchUp",
    "Deployment",
    "DeploymentState",
    "Job",
    "JobSchedule",
    "Model",
    "ModelSettings",
    "Overlap",
    "Registry",
    "ReplicaEvent",
    "Role",
    "Run",
    "RunMetric",
    "RunState",
    "SlotClaim",
    "Trigger",
]


def test_all_is_the_public_surface() -> None:
    assert modelyard.registry.__all__ == EXPECTED
    for name in EXPECTED:
        assert getattr(modelyard.registry, name) is not None
    assert modelyard.registry.DEFAULT_TTL_S == 2.0
    assert modelyard.registry.YEAR_MS == 365 * 86_400_000


def test_tokens_are_random_prefixed_and_hashed_with_sha256() -> None:
    tokens = {new_token("mya_") for _ in range(100)}
    assert len(tokens) == 100
    token = next(iter(tokens))
    assert token.startswith("mya_") and len(token) == 47
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert display_prefix(token) == token[:12]
    assert same_hash(hash_token(token), hash_token(token))
    assert not same_hash(hash_token(token), hash_token(token + "x"))


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
