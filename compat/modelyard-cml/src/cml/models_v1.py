"""``cml.models_v1``: the model decorator and ``call_model``, mapped onto Modelyard's own.

``@cml_model(metrics=True)`` is ``@modelyard.model_metrics`` (each call recorded, the result
wrapped as ``{"prediction": ..., "uuid": ...}``); ``@cml_model`` and ``@cml_model(metrics=False)``
return the function unchanged, as the reference does for a model without metrics.
``call_model`` is ``modelyard.call_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from modelyard.cdsw import call_model, model_metrics
from modelyard.errors import InvalidInput

__all__ = ["call_model", "cml_model"]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def cml_model(func: F, /) -> F: ...


@overload
def cml_model(*, metrics: bool = False) -> Callable[[F], Any]: ...


def cml_model(func: Any = None, /, *, metrics: bool = False) -> Any:
    """Mark a model's predict function; with ``metrics=True`` each call is recorded.

    Usable bare (``@cml_model``) or called (``@cml_model(metrics=True)``).
    """
    if not isinstance(metrics, bool):
        raise InvalidInput(f"cml_model(metrics=...) must be True or False, got {metrics!r:.80}")

    def decorate(target: Any) -> Any:
        if not callable(target):
            raise InvalidInput(
                f"@cml_model decorates a predict function, got {type(target).__name__} "
                f"({target!r:.80})"
            )
        return model_metrics(target) if metrics else target

    if func is None:
        return decorate
    return decorate(func)
