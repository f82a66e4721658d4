"""The wall clock in epoch milliseconds: the unit every record, run, event and key carries.

One definition for the whole package, so "now" means the same everywhere and a test can tell
where the time comes from. Durations are measured with ``time.monotonic()`` instead: the wall
clock may jump.
"""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """Milliseconds since the Unix epoch (UTC), read from the wall clock.

    >>> now_ms() > 1_600_000_000_000
    True
    """
    return time.time_ns() // 1_000_000
