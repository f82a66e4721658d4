"""Checking metric keys and values before they reach a record.

The reference accepts "any JSON value" and fails later or silently; here a bad value fails at the
``track_metric`` call that introduced it, naming the key and, inside lists and dicts, the path to
the bad element (``features.ages[3]``). NaN and infinity are rejected because JSON has no spelling
for them (orjson would quietly write ``null``). NumPy scalars and arrays, which data scientists
pass all the time, are converted to plain Python values; other objects (datetimes, sets, custom
classes) are refused rather than guessed at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from modelyard import settings
from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.tracking import _env

__all__ = [
    "MAX_TIME_MS",
    "MIN_TIME_MS",
    "check_key",
    "check_metrics",
    "check_size",
    "check_stored_ms",
    "check_value",
    "encoded_size",
    "max_record_bytes",
]

_ACCEPTED = "None, bool, int, finite float, str, list or dict with string keys"

# The times a record may carry, here and in the REST API alike (``modelyard.server.limits``), so
# a script that works against the embedded store works against a server too.
MIN_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TIME_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z


def check_stored_ms(value: int, argument: str) -> int:
    """``value`` (epoch milliseconds) if a record may carry it; InvalidInput naming the range
    otherwise (0 or a time in seconds is a mistake, not "the beginning")."""
    if not MIN_TIME_MS <= value <= MAX_TIME_MS:
        raise InvalidInput(
            f"{argument}={value} is outside the times a record may carry: epoch milliseconds "
            f"from 2000-01-01 ({MIN_TIME_MS}) to 2200-01-01 ({MAX_TIME_MS})"
        )
    return value


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"metric key must be a non-empty string, got {key!r}")
    return key


def _numpy_to_python(value: Any) -> Any:
    """A NumPy scalar or array as plain Python, or ``value`` unchanged if it is not NumPy."""
    if type(value).__module__ == "numpy":
        if hasattr(value, "tolist"):
            return value.tolist()
        if hasattr(value, "item"):
            return value.item()
    return value


_NUMBER_TYPES = frozenset((int, float, bool))


def _plain_numbers(values: list[Any] | tuple[Any, ...]) -> bool:
    """Whether ``values`` holds only plain ints, floats and bools, every float finite: a feature
    vector, the list tracked most often, checked in a few C-level passes instead of one
    ``check_value`` call (and one path string) per element.

    A sum that is not finite also happens for finite values near the float limit, and a huge int
    cannot become a float (``OverflowError``): both go to the element-by-element check, which
    accepts or names the bad element.

    >>> _plain_numbers([1.5, 2, True]), _plain_numbers([1.0, float("nan")])
    (True, False)
    >>> _plain_numbers([1.0, "a"]), _plain_numbers([1e308, 1e308]), _plain_numbers([])
    (False, False, True)
    """
    if not set(map(type, values)) <= _NUMBER_TYPES:
        return False
    try:
        total = sum(values)
    except OverflowError:
        return False
    return bool(total - total == 0)


def check_value(value: Any, path: str) -> Any:
    """``value`` as a JSON-ready Python value; InvalidInput naming ``path`` otherwise."""
    kind = type(value)
    # Fast path first: the common scalar cases cost one type check.
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise InvalidInput(
                f"metric {path!r} is {value!r}; JSON cannot hold NaN or infinity, "
                "track None or a finite number instead"
            )
        return value
    if kind is dict or isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInput(
                    f"metric {path!r} has a non-string key {k!r}; JSON objects need string keys"
                )
            out[k] = check_value(v, f"{path}.{k}")
        return out
    if kind is list or kind is tuple:
        if _plain_numbers(value):
            return list(value)
        return [check_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    converted = _numpy_to_python(value)
    if converted is not value:
        return check_value(converted, path)
    for base in (bool, int, float, str):  # subclasses such as IntEnum or StrEnum
        if isinstance(value, base):
            return check_value(base(value), path)
    raise InvalidInput(
        f"metric {path!r} has a value of type {kind.__name__} ({value!r:.80}); "
        f"accepted: {_ACCEPTED}"
    )


def check_metrics(metrics: object, argument: str = "metrics") -> dict[str, Any]:
    """A validated copy of a mapping of metrics (keys and values checked as above)."""
    if not isinstance(metrics, Mapping):
        raise InvalidInput(
            f"{argument} must be a dict of metric name to JSON value, "
            f"got {type(metrics).__name__} ({metrics!r:.80})"
        )
    return {check_key(k): check_value(v, k) for k, v in metrics.items()}


def encoded_size(metrics: Mapping[str, Any]) -> int:
    """Bytes of ``metrics`` encoded as JSON, the measure the size limit applies to."""
    return len(orjson.dumps(metrics))


_limit_cache: tuple[str | None, int] | None = None
_limit_env = _env.reader([settings.SETTINGS["max_record_bytes"].env])


def max_record_bytes() -> int:
    """The size limit, re-read from the environment but parsed only when its text changes.

    ``track_metric`` consults it on every call, so parsing ``'1MB'`` each time would cost more
    than the rest of the call.
    """
    global _limit_cache
    (raw,) = _limit_env()
    cached = _limit_cache
    if cached is not None and cached[0] == raw:
        return cached[1]
    limit: int = settings.get("max_record_bytes")
    _limit_cache = (raw, limit)
    return limit


def check_size(metrics: Mapping[str, Any], limit: int | None = None) -> int:
    """The encoded size of ``metrics``; PayloadTooLarge stating limit and size if over it."""
    limit = max_record_bytes() if limit is None else limit
    size = encoded_size(metrics)
    if size > limit:
        raise PayloadTooLarge(
            f"the record's metrics encode to {size} bytes, over the limit of {limit} bytes "
            "(MODELYARD_MAX_RECORD_BYTES); track fewer or smaller values",
            size=size,
            limit=limit,
        )
    return size
