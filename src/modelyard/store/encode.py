"""Checking and encoding what is written to the store, before any SQL runs.

Every check names the record and the value, and says how to fix it; nothing here touches the
database, so a bad batch fails before its transaction starts.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import orjson

from modelyard.clock import now_ms
from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.store.base import Identity, Prediction
from modelyard.store.typed import Layout, Layouts, layout_of

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


def encode_predictions(  # shape: one pass over the batch, every check inline for speed
    predictions: Sequence[Prediction],
    by_crn: dict[str, tuple[int, Identity]],
    limit: int,
    layouts: Layouts,
) -> tuple[list[tuple[Any, ...]], dict[str, Identity], list[Layout]]:
    """Validate and encode a batch as (deployment id, start_ms, uuid, end_ms, metrics JSON,
    layout, numbers) rows (``typed``: the JSON holds only what is not a number); rows of
    deployments not in ``by_crn`` carry the CRN instead of the id (returned with them), rows of
    a layout the store does not have yet carry the ``Layout`` instead of its id (returned too).
    ``limit`` is the largest metrics JSON accepted, in bytes."""
    rows: list[tuple[Any, ...]] = []
    unknown: dict[str, Identity] = {}
    append = rows.append
    encoder = _Encoder(layouts)
    encode = encoder.encode
    # The previous record's plan when it is all numbers (``_Encoder.same``), unpacked: a batch's
    # records nearly always share one, so each is checked against it inline (no call per record).
    same_keys: tuple[str, ...] | None = None
    same_types: tuple[type, ...] = ()
    same_pack: Any = None
    same_ref: Any = None
    same_bound = 0
    # The previous record's identity and the deployment id it resolved to.
    last_identity: object = _NO_IDENTITY
    last_id: Any = None
    for p in predictions:
        if type(p) is not Prediction and not isinstance(p, Prediction):
            raise InvalidInput(f"{p!r} is not a Prediction; write_predictions takes Predictions")
        uuid, start, end, metrics, identity = (
            p.uuid,
            p.start_ms,
            p.end_ms,
            p.metrics,
            p.identity,
        )
        if (
            type(uuid) is not str
            or not uuid
            or "\x00" in uuid
            or type(start) is not int
            or type(end) is not int
            or end < start
            or type(metrics) is not dict
        ):
            raise _bad_record(uuid, start, end, metrics)
        # The common record: the previous record's keys and value types, numbers only, every
        # float finite (else the general path makes it JSON null), every int within int64.
        values = tuple(metrics.values())
        numbers = None
        if (
            same_keys is not None
            and tuple(map(type, values)) == same_types
            and tuple(metrics) == same_keys
        ):
            total = sum(values)
            if total - total == 0:
                try:
                    numbers = same_pack(*values)
                except struct.error:  # an int past int64: the general path keeps it JSON
                    numbers = None
        if numbers is not None:
            layout, text, bound = same_ref, "", same_bound
        else:
            try:
                layout, numbers, text, bound = encode(metrics)
            except TypeError as exc:
                raise InvalidInput(
                    f"prediction {uuid}: metrics are not JSON-serialisable ({exc}); use numbers, "
                    "strings, booleans, None, lists and dicts with string keys"
                ) from exc
            plan = encoder.same()
            if plan is None:
                same_keys = None
            else:
                same_keys, same_types, same_pack, same_ref, same_bound = plan
        if bound > limit:
            size = len(orjson.dumps(metrics, option=JSON_OPTS))
            if size > limit:
                raise PayloadTooLarge(
                    f"prediction {uuid}: metrics are {size} bytes, more than "
                    f"MODELYARD_MAX_RECORD_BYTES={limit}; send fewer or smaller values",
                    uuid=uuid,
                )
        if identity is last_identity:
            append((last_id, start, uuid, end, text, layout, numbers))
            continue
        cached = by_crn.get(identity.deployment_crn) if isinstance(identity, Identity) else None
        if cached is not None and (cached[1] is identity or cached[1] == identity):
            last_identity, last_id = identity, cached[0]
            append((last_id, start, uuid, end, text, layout, numbers))
        else:
            if not isinstance(identity, Identity):
                raise InvalidInput(f"prediction {uuid}: identity {identity!r} must be an Identity")
            unknown[identity.deployment_crn] = identity
            append((identity.deployment_crn, start, uuid, end, text, layout, numbers))
    return rows, unknown, list(encoder.new.values())


_NO_IDENTITY = object()


def _bad_record(uuid: object, start: object, end: object, metrics: object) -> InvalidInput:
    """What is wrong with a record ``encode_predictions`` refused (the first problem found)."""
    if type(uuid) is not str or not uuid or "\x00" in uuid:
        return InvalidInput(
            f"prediction uuid {uuid!r} must be a non-empty string without NUL characters"
        )
    if type(start) is not int or type(end) is not int:
        return InvalidInput(
            f"prediction {uuid}: start_ms={start!r} and end_ms={end!r} must be integer "
            "epoch milliseconds"
        )
    if end < start:
        return InvalidInput(
            f"prediction {uuid}: end_ms={end} is before start_ms={start}; pass end_ms >= start_ms"
        )
    return InvalidInput(f"prediction {uuid}: metrics must be a dict, got {type(metrics).__name__}")


def _ref(layout: Layout) -> Any:
    return layout if layout.id is None else layout.id


# The letter a value's type alone gives (floats still need a finite value, ints int64 range).
_LETTER = {float: "f", int: "i", bool: "b"}


class _Encoder:
    """One batch's encoding: the store's layout plans, plus the layouts new in this batch."""

    def __init__(self, layouts: Layouts) -> None:
        self.layouts = layouts
        self.plans = layouts.plans
        self.new_plans: dict[tuple[tuple[str, ...], tuple[type, ...]], Layout] = {}
        self.new: dict[tuple[tuple[str, ...], str], Layout] = {}
        # The previous record's plan: a batch's records nearly always share one.
        self.last: Layout | None = None
        self.last_keys: tuple[str, ...] = ()
        self.last_types: tuple[type, ...] = ()

    def encode(self, metrics: dict[str, Any]) -> tuple[Any, bytes | None, str, int]:
        """(layout id, or the new ``Layout``, or None for JSON only; packed numbers; JSON text;
        an upper bound of the metrics' JSON size)."""
        values = tuple(metrics.values())
        keys = tuple(metrics)
        types = tuple(map(type, values))
        layout = self.last
        if layout is None or keys != self.last_keys or types != self.last_types:
            layout = self.plans.get((keys, types)) or self.new_plans.get((keys, types))
            if layout is None:
                return self._slow(metrics, values, (keys, types))
            self.last, self.last_keys, self.last_types = layout, keys, types
        nums = values if layout.all_numeric else layout.num_get(values)
        total = sum(nums)
        if total - total == 0:  # every float finite (an overflowing sum only costs time)
            try:
                numbers: bytes | None
                if layout.all_numeric:
                    numbers, text = layout.pack(*values), ""
                else:
                    numbers, text = layout.encode(values)
            except struct.error:  # an int outside int64: the slow path makes it JSON
                pass
            else:
                ref = layout if layout.id is None else layout.id
                return ref, numbers, text, layout.bound + len(text)
        return self._slow(metrics, values, (keys, types))

    def same(self) -> tuple[Any, ...] | None:
        """(keys, value types, pack, layout reference, size bound) of the last plan used, when
        it is all numbers: what ``encode_predictions`` checks a record against inline."""
        layout = self.last
        if layout is None or not layout.all_numeric:
            return None
        ref = layout if layout.id is None else layout.id
        return self.last_keys, self.last_types, layout.pack, ref, layout.bound

    def _slow(
        self,
        metrics: dict[str, Any],
        values: tuple[Any, ...],
        plan_key: tuple[tuple[str, ...], tuple[type, ...]],
    ) -> tuple[Any, bytes | None, str, int]:
        shape = layout_of(metrics)
        if shape is None:  # a key that is not a string: orjson says which
            text = orjson.dumps(metrics, option=JSON_OPTS).decode()
            return None, None, text, len(text)
        layout = self.layouts.by_shape.get(shape) or self.new.get(shape)
        if layout is None:
            if self.layouts.full():
                text = orjson.dumps(metrics, option=JSON_OPTS).decode()
                return None, None, text, len(text)
            layout = self.new[shape] = Layout(None, *shape)
        numbers, text = layout.encode(values)
        if "".join(_LETTER.get(t, "j") for t in plan_key[1]) == layout.types:
            (self.plans if layout.id is not None else self.new_plans)[plan_key] = layout
        return _ref(layout), numbers, text, layout.bound + len(text)


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
