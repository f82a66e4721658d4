"""Async test scenarios run from synchronous tests, each on a fresh event loop with a time limit.

A hung scenario fails with ``TimeoutError`` after ``timeout_s`` instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["run_scenario"]

T = TypeVar("T")


def run_scenario(scenario: Callable[[], Awaitable[T]], timeout_s: float) -> T:
    """``await scenario()`` on a new event loop; fail after ``timeout_s`` seconds."""
    return asyncio.run(asyncio.wait_for(scenario(), timeout_s))  # type: ignore[arg-type]
