"""``off_loop``: the one way an ``async`` route runs blocking work (registry and store calls).

The server's event loop also carries every prediction (the gateway), so nothing on it may wait on
the database. Control-plane routes are plain ``def`` functions, which FastAPI runs on its worker
threads; a route that must stay ``async`` (it streams a body, or awaits the controller) sends its
database work through ``off_loop``, onto the same worker threads. The predict path's rare cache
misses use another pool (``asyncio.to_thread``), so admin traffic that fills these threads cannot
hold a prediction up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

__all__ = ["off_loop"]

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on FastAPI's worker threads (``def`` routes run there too)."""
    return await run_in_threadpool(fn, *args, **kwargs)
