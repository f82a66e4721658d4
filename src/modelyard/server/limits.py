"""What the REST API accepts in values it stores or queries by: timestamps, metrics, text.

The SDK checks its own records before they leave the process (``modelyard.tracking.validate``);
a client of the REST API is anyone, so the routes apply the same checks on arrival:

- timestamps: epoch milliseconds from 2000-01-01 to 2200-01-01 (``MIN_TIME_MS``..``MAX_TIME_MS``)
  in prediction and aggregate records (``StoredMs``); from 0 (the beginning) to 2200-01-01 in
  read bounds and monitor windows (``ReadMs``, as their clients send 0). Declared in the
  OpenAPI schema (``minimum``/``maximum``), so a value outside is a 422 naming the field, the
  value and the bound, not an overflow deep in the database (2^63 used to be a 500);
- metrics: the SDK's own check (``check_metrics``): NaN, infinities and numbers beyond a float
  (``1e400``) are refused with 400 naming the key instead of being stored as ``null``;
- size: one record's metrics at most ``MODELYARD_MAX_RECORD_BYTES`` encoded (413 naming it), the
  limit prediction records already had, now also for delayed, aggregate and run metrics;
- paths (a project, a file, a job's script): no NUL, at most ``MAX_PATH_BYTES`` encoded and
  ``MAX_NAME_BYTES`` per part, Linux's own limits, checked before the file system sees them
  (which otherwise answers ``ValueError`` or ``OSError``, and the route a 500).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.specs.checks import MAX_NAME_BYTES, MAX_PATH_BYTES, check_path
from modelyard.tracking.validate import MAX_TIME_MS, MIN_TIME_MS, check_metrics, check_size

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "MAX_TEXT",
    "MAX_TIME_MS",
    "MIN_TIME_MS",
    "ReadMs",
    "StoredMs",
    "check_path",
    "check_record",
]

MAX_TEXT = 200  # identifiers and labels (uuids, CRNs, a delayed value's source)

StoredMs = Annotated[
    int,
    Field(
        ge=MIN_TIME_MS,
        le=MAX_TIME_MS,
        description="Epoch milliseconds, from 2000-01-01 (946684800000) to 2200-01-01 "
        "(7258118400000)",
    ),
]
ReadMs = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_TIME_MS,
        description="Epoch milliseconds, from 0 (the beginning) to 2200-01-01 (7258118400000)",
    ),
]


def check_record(metrics: Mapping[str, Any], what: str, size: bool = True) -> dict[str, Any]:
    """``metrics`` checked as the SDK checks them (400 naming the key of a NaN, an infinity or a
    non-JSON value) and, with ``size``, within ``MODELYARD_MAX_RECORD_BYTES`` encoded (413
    naming the limit; the store checks prediction records itself, so their route skips it).

    ``what`` names the record in the messages (``delayed metrics of 'uuid'``). Flat metrics of
    plain scalars, the common case on the bulk route, take a loop of type checks only."""
    if isinstance(metrics, dict) and _plain(metrics):
        checked: dict[str, Any] = metrics
    else:
        checked = check_metrics(metrics)
    if not size:
        return checked
    try:
        check_size(checked)
    except PayloadTooLarge as exc:  # say which record it was
        raise PayloadTooLarge(f"{what}: {exc.message}", **exc.details) from None
    except TypeError as exc:  # orjson: a lone surrogate ("\ud800") in a key or a string
        raise InvalidInput(
            f"{what}: the metrics hold text that is not valid Unicode ({exc}); send valid UTF-8"
        ) from None
    return checked


def _plain(metrics: dict[str, Any]) -> bool:
    """True if every value is None, a bool, an int, a str or a finite float under a non-empty
    key: nothing for ``check_metrics`` to refuse or convert (anything else takes its path)."""
    for key, value in metrics.items():
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # NaN or an infinity (inf - inf is NaN)
                return False
        elif not (kind is str or kind is int or kind is bool or value is None):
            return False
        if type(key) is not str or not key:
            return False
    return True
