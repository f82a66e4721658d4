"""The wall clock in epoch milliseconds: the unit every record, run, event and key carries.

One definition for the whole package, so "now" means the same everywhere and a test can tell
where the time comes from. Durations are measured with ``time.monotonic()`` instead: the wall
clock may jump.
"""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """Milliseconds since the Unix epoch (UTC), read from the wall clock, rounded to the nearest.

    Rounded, not truncated, because scripts written for the reference platform take a window's
    start as ``int(round(time.time() * 1000))`` before predicting: with truncation a prediction
    made in the same half millisecond would be stamped one millisecond before the window that was
    opened for it, and fall outside it.

    >>> now_ms() > 1_600_000_000_000
    True
    """
    return (time.time_ns() + 500_000) // 1_000_000
