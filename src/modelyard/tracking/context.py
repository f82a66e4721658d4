"""The per-prediction context: which record a ``track_metric`` call belongs to.

A ``contextvars.ContextVar`` rather than a thread-local, because the same rule must hold for
threads and for asyncio tasks: every decorated call sets a fresh context for the code it runs, so
concurrent predictions in different threads or tasks never see each other's metrics, and a task
spawned inside a prediction (which copies the current context) still adds to that prediction's
record. Nested decorated calls each get their own record; the outer one is restored on return.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PredictionContext", "current", "enter", "leave"]


@dataclass(slots=True)
class PredictionContext:
    """The record being built for one decorated call.

    ``size_estimate`` is an upper bound of the encoded size of ``metrics`` kept incrementally,
    so the size limit costs nothing until a record gets close to it (see ``tracking.validate``).
    """

    uuid: str
    metrics: dict[str, Any] = field(default_factory=dict)
    size_estimate: int = 2


_CURRENT: ContextVar[PredictionContext | None] = ContextVar("modelyard_prediction", default=None)


def current() -> PredictionContext | None:
    """The prediction being computed by the caller, or None outside any decorated call."""
    return _CURRENT.get()


def enter(uuid: str) -> tuple[PredictionContext, Token[PredictionContext | None]]:
    """Start a prediction's context; pass the token to ``leave`` when the call ends."""
    ctx = PredictionContext(uuid)
    return ctx, _CURRENT.set(ctx)


def leave(token: Token[PredictionContext | None]) -> None:
    _CURRENT.reset(token)
