"""The ``model_metrics`` decorator: one prediction record per call of a predict function.

Each call gets a fresh time-ordered uuid (``ids.new_prediction_uuid``, version 7) and its own
tracking context; start and end are wall-clock milliseconds around the call. The record is handed
to the backend's buffered writer (an enqueue, no database round trip) and the caller gets
``{"prediction": result, "uuid": uuid}``, the reference platform's shape.

If the function raises, the record is still written, with the metrics tracked so far plus an
``_error`` metric, ``{"type": "<module.Class>", "message": "<str(exc), at most 1000 chars>"}``,
and the exception propagates unchanged. Async functions are supported the same way.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from modelyard.clock import now_ms
from modelyard.ids import new_prediction_uuid
from modelyard.store.base import Prediction
from modelyard.tracking import backends, context
from modelyard.tracking.capture import active as _active_capture

__all__ = ["ERROR_KEY", "model_metrics"]

ERROR_KEY = "_error"
_MAX_MESSAGE = 1000

P = ParamSpec("P")
R = TypeVar("R")


def _error_marker(exc: BaseException) -> dict[str, str]:
    cls = type(exc)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    return {"type": name, "message": str(exc)[:_MAX_MESSAGE]}


def _record(ctx: context.PredictionContext, start_ms: int, dev: bool) -> None:
    end_ms = now_ms()
    sink = _active_capture()
    if sink is not None:  # a replica: the gateway writes the record, no backend is opened here
        sink.add(ctx.uuid, start_ms, end_ms, ctx.metrics)
        return
    backend = backends.select(dev)
    backend.submit(Prediction(ctx.uuid, backend.identity, start_ms, end_ms, ctx.metrics))


@overload
def model_metrics(fn: Callable[P, R], /) -> Callable[P, dict[str, Any]]: ...
@overload
def model_metrics(
    fn: None = None, /, *, dev: bool = False
) -> Callable[[Callable[P, R]], Callable[P, dict[str, Any]]]: ...


def model_metrics(fn: Any = None, /, *, dev: bool = False) -> Any:
    """Decorate a predict function so each call is recorded under a fresh uuid.

    Use as ``@model_metrics`` or ``@model_metrics(dev=True)`` (always record in dev mode).
    """
    if fn is None:
        return functools.partial(_decorate, dev=dev)
    return _decorate(fn, dev=dev)


def _decorate(fn: Callable[..., Any], dev: bool) -> Callable[..., dict[str, Any]]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
            uid = new_prediction_uuid()
            ctx, token = context.enter(uid)
            start_ms = now_ms()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                ctx.metrics[ERROR_KEY] = _error_marker(exc)
                _record(ctx, start_ms, dev)
                raise
            finally:
                context.leave(token)
            _record(ctx, start_ms, dev)
            return {"prediction": result, "uuid": uid}

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        uid = new_prediction_uuid()
        ctx, token = context.enter(uid)
        start_ms = now_ms()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            ctx.metrics[ERROR_KEY] = _error_marker(exc)
            _record(ctx, start_ms, dev)
            raise
        finally:
            context.leave(token)
        _record(ctx, start_ms, dev)
        return {"prediction": result, "uuid": uid}

    return wrapper
