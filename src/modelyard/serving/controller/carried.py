"""Controller operations carried through to the end, whoever stops waiting for them.

An HTTP client that hangs up halfway through a rollout cancels the request's task; if that
cancelled the rollout too, a pool could be left holding half of two deployments. So each
operation runs as its own task, shielded from its caller's cancellation: it finishes (or rolls
back) either way, and the controller keeps a reference to it until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

__all__ = ["carried_through"]


class _Carrier(Protocol):
    """An object that keeps its running operations (so none is garbage-collected half done)."""

    _background: set[asyncio.Task[Any]]


C = TypeVar("C", bound=_Carrier)
P = ParamSpec("P")
R = TypeVar("R")


def carried_through(
    method: Callable[Concatenate[C, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[C, P], Coroutine[Any, Any, R]]:
    """Run the operation as its own task, shielded from its caller's cancellation: an HTTP
    client that hangs up halfway through a rollout must not leave a pool holding half of two
    deployments. The operation finishes (or rolls back) either way."""

    async def carried(self: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        task = asyncio.ensure_future(method(self, *args, **kwargs))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    carried.__name__, carried.__qualname__ = method.__name__, method.__qualname__
    carried.__doc__ = method.__doc__
    return carried


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Look at the outcome so an abandoned caller's error is not logged as never retrieved."""
    if not task.cancelled():
        task.exception()
