"""Checking a ``Query`` and encoding the continuation token of a page.

Records of all kinds are ordered by one sort key, ``(start_ms, kind rank, tiebreak)``: predictions
(rank 0) break ties by uuid, aggregates (rank 1) and rollup buckets (rank 2) by their row id. The
token is that key of the last record of a page, base64url-encoded JSON, so a page continues
exactly after it whatever was written in between.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

from modelyard.clock import now_ms
from modelyard.errors import InvalidInput
from modelyard.store.base import Query, RecordKind

__all__ = ["KIND_RANK", "SortKey", "Window", "check_window", "decode_token", "encode_token"]

KIND_RANK: dict[RecordKind, int] = {
    RecordKind.PREDICTION: 0,
    RecordKind.AGGREGATE: 1,
    RecordKind.ROLLUP: 2,
}

SortKey = tuple[int, int, str | int]


@dataclass(frozen=True, slots=True)
class Window:
    """A checked query: timestamps are ints, ``end_ms`` is resolved, the token is decoded."""

    start_ms: int
    end_ms: int
    limit: int | None
    after: SortKey | None
    kinds: frozenset[RecordKind]
    tier_ms: int | None = None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_window(query: Query) -> Window:
    """Validate everything in ``query`` except the identifiers (the store resolves those)."""
    if query.model_crn is None and query.build_crn is None and query.deployment_crn is None:
        raise InvalidInput(
            "a query must name at least one of model_crn, build_crn or deployment_crn; got none",
        )
    for name, value in (
        ("model_crn", query.model_crn),
        ("build_crn", query.build_crn),
        ("deployment_crn", query.deployment_crn),
    ):
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidInput(f"{name}={value!r} must be a non-empty CRN string or None")
    if not _is_int(query.start_ms):
        raise InvalidInput(
            f"start_ms={query.start_ms!r} must be an integer number of milliseconds since the epoch"
        )
    end_ms = now_ms() if query.end_ms is None else query.end_ms
    if not _is_int(end_ms):
        raise InvalidInput(
            f"end_ms={query.end_ms!r} must be an integer number of milliseconds since the epoch "
            "or None (now)"
        )
    if query.start_ms > end_ms:
        raise InvalidInput(
            f"start_ms={query.start_ms} is after end_ms={end_ms}; pass start_ms <= end_ms"
        )
    if query.limit is not None and (not _is_int(query.limit) or query.limit < 1):
        raise InvalidInput(f"limit={query.limit!r} must be a positive integer or None (no limit)")
    try:
        # Plain strings ("prediction") become members, so later identity checks hold.
        kinds = frozenset(RecordKind(k) for k in query.kinds)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"kinds {sorted(map(str, query.kinds))!r} must be record kinds: "
            f"{', '.join(k.value for k in RecordKind)}"
        ) from exc
    if query.tier_ms is not None and (not _is_int(query.tier_ms) or query.tier_ms < 1):
        raise InvalidInput(
            f"tier_ms={query.tier_ms!r} must be a bucket width in milliseconds (a positive "
            "integer, e.g. 3600000) or None (every tier)"
        )
    after = None if query.after is None else decode_token(query.after)
    return Window(query.start_ms, end_ms, query.limit, after, kinds, query.tier_ms)


def encode_token(key: SortKey) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode("ascii").rstrip("=")


def decode_token(token: str) -> SortKey:
    """The sort key inside a continuation token; InvalidInput if it is not one of ours."""
    try:
        padded = token + "=" * (-len(token) % 4)
        start_ms, rank, tiebreak = orjson.loads(base64.urlsafe_b64decode(padded))
        if _is_int(start_ms) and rank in (0, 1, 2):
            if rank == 0 and isinstance(tiebreak, str):
                return (start_ms, rank, tiebreak)
            if rank > 0 and _is_int(tiebreak):
                return (start_ms, rank, tiebreak)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        pass
    raise InvalidInput(
        f"after={token!r} is not a continuation token; pass the token a previous read returned"
    )
