"""Polling for tests that wait on real processes and threads: one loop, one failure message."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout_s: float = 15.0, what: str = "", step_s: float = 0.02
) -> T:
    """Poll ``predicate`` every ``step_s`` until it is truthy and return its value; fail naming
    ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
