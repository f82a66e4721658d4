"""The capture seam: hand ``@model_metrics`` records to the caller instead of the process's writer.

A replica does not write prediction records: the gateway does (see ``docs/design/serving.md``), so
a replica killed right after answering loses nothing and needs no database of its own. The replica
runs each call of user code inside ``capture()``; while a capture is active in the current
context, the decorator appends its record to that capture and does not resolve a backend at all,
so no store is opened, no writer thread started and no ``MODELYARD_*`` home is needed::

    with capture() as captured:
        output = predict({"tenure": 3})
    record = captured.records[-1]  # same uuid as output["uuid"]

A ``ContextVar`` (not a thread-local, not a global) for the same reason as the prediction context:
captures in concurrent threads or asyncio tasks never see each other's records. Nested decorated
calls each add a record; the outermost call finishes last, so its record is the last one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Capture", "CapturedRecord", "active", "capture"]


@dataclass(slots=True)
class CapturedRecord:
    """One prediction record without its identity: the gateway adds the deployment's identity."""

    uuid: str
    start_ms: int
    end_ms: int
    metrics: dict[str, Any]

    def to_reference(self) -> dict[str, Any]:
        """The record in the reference platform's key names (the replica protocol's ``R``)."""
        return {
            "predictionUuid": self.uuid,
            "startTimeStampMs": self.start_ms,
            "endTimeStampMs": self.end_ms,
            "metrics": self.metrics,
        }


@dataclass(slots=True)
class Capture:
    """The records captured so far, in the order their calls finished."""

    records: list[CapturedRecord] = field(default_factory=list)

    def add(self, uuid: str, start_ms: int, end_ms: int, metrics: dict[str, Any]) -> None:
        self.records.append(CapturedRecord(uuid, start_ms, end_ms, metrics))

    def find(self, uuid: str) -> CapturedRecord | None:
        """The record with this uuid (the last one if several), or None."""
        for record in reversed(self.records):
            if record.uuid == uuid:
                return record
        return None


_ACTIVE: ContextVar[Capture | None] = ContextVar("modelyard_capture", default=None)


def active() -> Capture | None:
    """The capture records go to in the current context, or None (records go to the backend)."""
    return _ACTIVE.get()


@contextmanager
def capture() -> Iterator[Capture]:
    """Capture the records of decorated calls made inside the ``with`` block (this context only)."""
    sink = Capture()
    token = _ACTIVE.set(sink)
    try:
        yield sink
    finally:
        _ACTIVE.reset(token)
