"""The one back-off policy (modelyard.backoff): growth, cap, jitter, crash loops, bad settings."""

from __future__ import annotations

import doctest
import itertools
import random

import pytest

import modelyard.backoff as backoff_mod
from modelyard.backoff import Backoff, CrashLoop
from modelyard.errors import InvalidInput


def test_delays_double_to_their_cap_without_jitter() -> None:
    policy = Backoff(base_s=1.0, cap_s=30.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 9)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert list(itertools.islice(policy.delays(), 3)) == [1.0, 2.0, 4.0]
    assert policy.delay(0) == policy.delay(-3) == 1.0  # below 1 counts as the first retry


def test_no_cap_and_a_zero_base() -> None:
    assert Backoff(base_s=0.5, cap_s=None, jitter=0.0).delay(11) == 512.0
    assert Backoff(base_s=0.0, cap_s=None).delay(50) == 0.0  # retry at once, every time


def test_a_long_run_of_failures_stays_at_the_cap() -> None:
    assert Backoff(base_s=1.0, cap_s=5.0, factor=10.0, jitter=0.0).delay(10_000) == 5.0


def test_jitter_stays_within_its_fraction_and_spreads() -> None:
    delays = []
    for seed in range(200):
        policy = CrashLoop(Backoff(base_s=2.0, jitter=0.2), rng=random.Random(seed))
        delays.append(policy.next_delay(0.0))
    assert all(1.6 <= d <= 2.4 for d in delays)
    assert max(delays) - min(delays) > 0.5  # not all the same: replicas do not restart in step


def test_jitter_shakes_every_attempt_around_its_own_delay() -> None:
    rng = random.Random(7)
    delays = [Backoff(base_s=1.0, cap_s=None, jitter=0.2).delay(n, rng) for n in (1, 2, 3, 4)]
    for attempt, delay in enumerate(delays, start=1):
        assert 0.8 * 2 ** (attempt - 1) <= delay <= 1.2 * 2 ** (attempt - 1)
    assert len(set(delays)) == 4


def test_a_crash_loop_doubles_to_its_cap() -> None:
    loop = CrashLoop(Backoff(base_s=1.0, cap_s=30.0, jitter=0.0), stable_after_s=60.0)
    delays = [loop.next_delay(ran_for_s=0.1) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_crash_loop_resets_after_a_stable_run() -> None:
    loop = CrashLoop(Backoff(base_s=1.0, cap_s=30.0, jitter=0.0), stable_after_s=60.0)
    for _ in range(4):
        loop.next_delay(ran_for_s=1.0)
    assert loop.next_delay(ran_for_s=59.0) == 16.0
    assert loop.next_delay(ran_for_s=60.0) == 1.0
    assert loop.next_delay(ran_for_s=0.0) == 2.0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"base_s": -1}, "base_s=-1"),
        ({"base_s": 5, "cap_s": 1}, "cap_s=1"),
        ({"factor": 0.5}, "factor=0.5"),
        ({"jitter": 1.0}, "jitter=1.0"),
        ({"jitter": -0.1}, "jitter=-0.1"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        Backoff(**kwargs)


def test_the_policy_is_frozen_and_its_example_runs() -> None:
    with pytest.raises(AttributeError):
        Backoff().base_s = 2.0  # type: ignore[misc]
    result = doctest.testmod(backoff_mod, raise_on_error=False)
    assert result.attempted >= 1 and result.failed == 0
