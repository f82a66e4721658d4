"""Identifiers: ``crn:modelyard:<kind>/<uuid>`` for models, builds, deployments, jobs and runs,
and the uuids of prediction records.

Prediction uuids are time-ordered (RFC 9562 version 7: the first 48 bits are the Unix time in
milliseconds, the other 74 are random): still plain uuid strings to every reader, but each new
one sorts after the ones minted a millisecond earlier. The store keeps every prediction uuid ever
written in one index (``prediction_uuids``, to refuse duplicates and find a record by uuid);
with time-ordered uuids a batch appends at the end of that index instead of touching a random
page of it per record, so ingest keeps its rate however large the store grows
(``benchmarks/store_growth.py``; docs/store.md, "Ingest as the store grows").
"""

from __future__ import annotations

import os
import time
import uuid

from modelyard.errors import InvalidInput

__all__ = ["KINDS", "check_crn", "is_uuid", "new_crn", "new_prediction_uuid"]

KINDS = ("model", "build", "deployment", "job", "run")
_PREFIX = "crn:modelyard:"


def new_crn(kind: str) -> str:
    """A fresh identifier of the given kind (one of ``KINDS``)."""
    if kind not in KINDS:
        raise InvalidInput(f"CRN kind {kind!r} is not one of {', '.join(KINDS)}")
    return f"{_PREFIX}{kind}/{uuid.uuid4()}"


def new_prediction_uuid() -> str:
    """A fresh time-ordered (version 7) uuid string, about 1 us.

    Random bits come from ``os.urandom`` per call (no pool), so forked processes never share
    them; uuids minted in the same millisecond are unique but not ordered among themselves.

    >>> a = new_prediction_uuid()
    >>> uuid.UUID(a).version, len(a), a == a.lower()
    (7, 36, True)
    >>> time.sleep(0.002)
    >>> a < new_prediction_uuid()  # a later millisecond sorts later, as text too
    True
    """
    value = int.from_bytes(os.urandom(10), "big")  # 80 random bits; 74 are kept
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76  # version 7
        | (value >> 68) << 64  # rand_a: 12 bits
        | 0x2 << 62  # RFC variant
        | (value & 0x3FFF_FFFF_FFFF_FFFF)  # rand_b: 62 bits
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def check_crn(value: object, kind: str, argument: str) -> str:
    """Return ``value`` if it is a CRN of ``kind``; else raise InvalidInput naming ``argument``.

    Any non-empty string that starts with ``crn:`` and names the kind is accepted, so identifiers
    minted by the reference platform (``crn:cdp:ml:...``) can be stored as they are.
    """
    if not isinstance(value, str) or not value:
        raise InvalidInput(
            f"{argument} must be a non-empty CRN string such as "
            f"'{_PREFIX}{kind}/<uuid>', got {value!r}"
        )
    if not value.startswith("crn:"):
        raise InvalidInput(
            f"{argument}={value!r} is not a CRN; expected a string like '{_PREFIX}{kind}/<uuid>'"
        )
    return value
