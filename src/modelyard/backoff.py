"""Back-off with jitter: how long to wait before trying again, for every retry loop in Modelyard.

``Backoff`` is the policy: the first retry waits ``base_s``, the next ``factor`` times that, and
so on up to ``cap_s`` (None: no cap), each wait shaken by up to ``jitter`` (a fraction) so many
clients that failed together do not all come back in the same instant. Replica restarts, job-run
retries, notification deliveries, the buffered writer and SQLite's busy retries all use it.

``CrashLoop`` adds the memory a supervisor needs: the delays grow while a process keeps failing,
and one that ran for ``stable_after_s`` before it failed starts again from ``base_s`` (an
occasional crash is not a crash loop).

>>> policy = Backoff(base_s=1.0, cap_s=5.0, jitter=0.0)
>>> [policy.delay(attempt) for attempt in range(1, 6)]
[1.0, 2.0, 4.0, 5.0, 5.0]
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from modelyard.errors import InvalidInput

__all__ = ["Backoff", "CrashLoop"]

_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off with jitter, in seconds; see the module docstring. ``base_s=0``
    retries at once."""

    base_s: float = 1.0
    cap_s: float | None = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not self.base_s >= 0 or (self.cap_s is not None and self.cap_s < self.base_s):
            raise InvalidInput(
                f"backoff base_s={self.base_s!r}, cap_s={self.cap_s!r}: need 0 <= base_s <= cap_s"
            )
        if not self.factor >= 1:
            raise InvalidInput(f"backoff factor={self.factor!r} must be >= 1")
        if not 0 <= self.jitter < 1:
            raise InvalidInput(f"backoff jitter={self.jitter!r} must be in [0, 1)")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``attempt`` (1 is the first retry; below 1 counts as 1)."""
        if self.base_s == 0:
            return 0.0
        try:
            grown = self.base_s * self.factor ** (max(attempt, 1) - 1)
        except OverflowError:  # a very long run of failures: the cap (or no limit) holds
            grown = math.inf
        capped = grown if self.cap_s is None else min(self.cap_s, grown)
        if not self.jitter:
            return capped
        return capped * (1 + (rng or _RNG).uniform(-self.jitter, self.jitter))

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """``delay(1)``, ``delay(2)``, ... without end: ``next()`` it before each retry."""
        return (self.delay(attempt, rng) for attempt in itertools.count(1))


@dataclass
class CrashLoop:
    """Restart delays for a process that may keep failing; see the module docstring."""

    policy: Backoff
    stable_after_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    failures: int = 0

    def next_delay(self, ran_for_s: float) -> float:
        """The delay before the next start, given how long the last start ran before failing."""
        if ran_for_s >= self.stable_after_s:
            self.failures = 0
        self.failures += 1
        return self.policy.delay(self.failures, self.rng)
