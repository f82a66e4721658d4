"""Identifiers: ``crn:modelyard:<kind>/<uuid>`` for models, builds, deployments, jobs and runs."""

from __future__ import annotations

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
    return str(uuid.uuid4())


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
