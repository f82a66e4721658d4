"""Async code run from synchronous tests: each on a fresh event loop, with a time limit.

``run(scenario)`` takes a coroutine (``run(main())``) or an async function of no arguments
(``run(main)``). A hung scenario fails with ``TimeoutError`` after ``timeout_s`` instead of
stalling the suite; a module whose scenarios need a different limit binds it once, e.g.
``run = partial(_async.run, timeout_s=30)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(scenario: Awaitable[T] | Callable[[], Awaitable[T]], timeout_s: float = 120) -> T:
    """``await scenario`` on a new event loop; fail after ``timeout_s`` seconds."""
    awaitable = scenario() if callable(scenario) else scenario

    async def limited() -> T:
        return await asyncio.wait_for(awaitable, timeout_s)

    return asyncio.run(limited())
