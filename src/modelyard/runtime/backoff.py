"""Restart delays: exponential with jitter, capped, forgiven after a stable run.

A replica that crashes at once is restarted after ``base_s``, then ``2 * base_s``, ``4 * base_s``
... up to ``cap_s``, each delay shaken by up to ``jitter`` (a fraction) so many replicas that died
together do not all come back in the same instant. A replica that ran for ``stable_after_s``
before it failed starts again from ``base_s``: an occasional crash is not a crash loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from modelyard.errors import InvalidInput

__all__ = ["Backoff"]


@dataclass
class Backoff:
    base_s: float = 1.0
    cap_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    stable_after_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise InvalidInput(
                f"backoff base_s={self.base_s!r}, cap_s={self.cap_s!r}: need 0 < base_s <= cap_s"
            )
        if self.factor < 1:
            raise InvalidInput(f"backoff factor={self.factor!r} must be >= 1")
        if not 0 <= self.jitter < 1:
            raise InvalidInput(f"backoff jitter={self.jitter!r} must be in [0, 1)")

    def next_delay(self, ran_for_s: float) -> float:
        """The delay before the next start, given how long the last start ran before failing."""
        if ran_for_s >= self.stable_after_s:
            self.failures = 0
        delay = min(self.cap_s, self.base_s * self.factor**self.failures)
        self.failures += 1
        return delay * (1 + self.rng.uniform(-self.jitter, self.jitter))
