"""Checking and encoding what is written to the store, before any SQL runs.

Every check names the record and the value, and says how to fix it; nothing here touches the
database, so a bad batch fails before its transaction starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from modelyard.clock import now_ms
from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.store.base import Identity, Prediction

__all__ = [
    "JSON_OPTS",
    "aggregate_text",
    "delayed_values",
    "encode_predictions",
    "is_int",
    "merge_text",
    "merged",
]

JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def merge_text(metrics: str, delayed: str) -> str:
    """A prediction's metrics with its delayed values on top (a JSON null is kept as null)."""
    merged = orjson.loads(metrics)
    merged.update(orjson.loads(delayed))
    return orjson.dumps(merged).decode()


def merged(metrics: str, delayed: str | None) -> dict[str, Any]:
    """A stored prediction's metrics as a dict, its delayed values (if any) on top."""
    out: dict[str, Any] = orjson.loads(metrics)
    if delayed is not None:
        out.update(orjson.loads(delayed))
    return out


def encode_predictions(
    predictions: Sequence[Prediction], by_crn: dict[str, tuple[int, Identity]], limit: int
) -> tuple[list[tuple[Any, ...]], dict[str, Identity]]:
    """Validate and encode a batch as (deployment id, start_ms, uuid, end_ms, metrics JSON) rows;
    rows of deployments not in ``by_crn`` carry the CRN instead of the id (returned with them).
    ``limit`` is the largest metrics JSON accepted, in bytes."""
    rows: list[tuple[Any, ...]] = []
    unknown: dict[str, Identity] = {}
    dumps = orjson.dumps
    append = rows.append
    for p in predictions:
        if not isinstance(p, Prediction):
            raise InvalidInput(f"{p!r} is not a Prediction; write_predictions takes Predictions")
        uuid, start, end, metrics, identity = (
            p.uuid,
            p.start_ms,
            p.end_ms,
            p.metrics,
            p.identity,
        )
        if type(uuid) is not str or not uuid or "\x00" in uuid:
            raise InvalidInput(
                f"prediction uuid {uuid!r} must be a non-empty string without NUL characters"
            )
        if type(start) is not int or type(end) is not int:
            raise InvalidInput(
                f"prediction {uuid}: start_ms={start!r} and end_ms={end!r} must be integer "
                "epoch milliseconds"
            )
        if end < start:
            raise InvalidInput(
                f"prediction {uuid}: end_ms={end} is before start_ms={start}; "
                "pass end_ms >= start_ms"
            )
        if type(metrics) is not dict:
            raise InvalidInput(
                f"prediction {uuid}: metrics must be a dict, got {type(metrics).__name__}"
            )
        try:
            text = dumps(metrics, option=JSON_OPTS)
        except TypeError as exc:
            raise InvalidInput(
                f"prediction {uuid}: metrics are not JSON-serialisable ({exc}); use numbers, "
                "strings, booleans, None, lists and dicts with string keys"
            ) from exc
        if len(text) > limit:
            raise PayloadTooLarge(
                f"prediction {uuid}: metrics are {len(text)} bytes, more than "
                f"MODELYARD_MAX_RECORD_BYTES={limit}; send fewer or smaller values",
                uuid=uuid,
            )
        cached = by_crn.get(identity.deployment_crn) if isinstance(identity, Identity) else None
        if cached is not None and (cached[1] is identity or cached[1] == identity):
            append((cached[0], start, uuid, end, text.decode()))
        else:
            if not isinstance(identity, Identity):
                raise InvalidInput(f"prediction {uuid}: identity {identity!r} must be an Identity")
            unknown[identity.deployment_crn] = identity
            append((identity.deployment_crn, start, uuid, end, text.decode()))
    return rows, unknown


def aggregate_text(start_ms: int, end_ms: int, metrics: dict[str, Any]) -> str:
    """The metrics as JSON text after checking the window; InvalidInput names what is wrong."""
    if not is_int(start_ms) or not is_int(end_ms):
        raise InvalidInput(
            f"aggregate window start_ms={start_ms!r}, end_ms={end_ms!r} must be integer "
            "epoch milliseconds"
        )
    if start_ms > end_ms:
        raise InvalidInput(
            f"aggregate window start_ms={start_ms} is after end_ms={end_ms}; "
            "pass start_ms <= end_ms"
        )
    if not isinstance(metrics, dict):
        raise InvalidInput(f"aggregate metrics must be a dict, got {type(metrics).__name__}")
    try:
        text = orjson.dumps(metrics, option=JSON_OPTS).decode()
    except TypeError as exc:
        raise InvalidInput(f"aggregate metrics are not JSON-serialisable ({exc})") from exc
    return text


def delayed_values(
    uuid: str, metrics: dict[str, Any], source: str, tracked_ms: int | None
) -> tuple[list[tuple[str, str]], dict[str, Any], int]:
    """Checked delayed values of one prediction: (key, JSON text) pairs for provenance, the same
    values as plain JSON to merge, and when they were tracked (``tracked_ms`` or now)."""
    if not isinstance(uuid, str) or not uuid:
        raise InvalidInput(f"uuid={uuid!r} must be the prediction's uuid string")
    if not isinstance(metrics, dict) or not metrics:
        raise InvalidInput(
            f"delayed metrics for {uuid} must be a non-empty dict of key -> value, got {metrics!r}"
        )
    bad_keys = [k for k in metrics if not isinstance(k, str) or not k or "\x00" in k]
    if bad_keys:
        raise InvalidInput(f"delayed metric keys {bad_keys!r} must be non-empty strings")
    if not isinstance(source, str) or "\x00" in source:
        raise InvalidInput(f"source={source!r} must be a string naming where values came from")
    when = now_ms() if tracked_ms is None else tracked_ms
    if not is_int(when):
        raise InvalidInput(f"tracked_ms={tracked_ms!r} must be integer epoch milliseconds")
    try:
        values = [(k, orjson.dumps(v, option=JSON_OPTS).decode()) for k, v in metrics.items()]
    except TypeError as exc:
        raise InvalidInput(f"delayed metrics for {uuid} are not JSON-serialisable ({exc})") from exc
    # Round-trip so what is merged is exactly what provenance keeps (numpy -> plain JSON).
    plain = {k: orjson.loads(text) for k, text in values}

    return values, plain, when
