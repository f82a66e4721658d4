"""One window of a deployment, read in batches and kept as the few columns a monitor needs.

The window is read with ``MonitorAccess.scan`` (the SDK backend's scan: the embedded store, or
``GET /api/v1/metrics`` pages on a server) in bounded batches; each batch keeps only the feature,
prediction, label, uuid and time columns, so memory grows with the window's rows times the
monitored columns, not with everything each record carries. Rollup buckets whose start lies in
the window (raw records already folded, see ``modelyard.store.rollup``) are kept as what they
still say about the window: how many predictions they folded, their categories' counts, and
how far the widest one reaches. When a label is monitored, the arrival time of each prediction's
first label comes from ``MonitorAccess.label_times``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from modelyard.monitors.access import MonitorAccess
from modelyard.store.base import Query, RecordKind, RowBatch
from modelyard.tracking.frame import batch_to_frame

__all__ = ["RolledUp", "WindowData", "concat_window", "iter_window", "read_window"]

_BATCH = 20_000
_KINDS = frozenset({RecordKind.PREDICTION, RecordKind.ROLLUP})


@dataclass
class RolledUp:
    """What the window's rollup buckets keep: folded predictions, category counts per key."""

    buckets: int = 0
    records: int = 0
    last_end_ms: int = 0  # the end of the bucket reaching furthest (may pass the window's end)
    categories: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class WindowData:
    """The monitored columns of one window; ``label_ms`` is NaN where no label has arrived."""

    frame: pd.DataFrame  # features, prediction and label columns
    uuids: list[str]
    prediction_ms: np.ndarray[Any, np.dtype[np.float64]]
    label_ms: np.ndarray[Any, np.dtype[np.float64]] | None
    rolled: RolledUp = field(default_factory=RolledUp)

    @property
    def n(self) -> int:
        """Raw predictions read (rolled-up ones are in ``rolled.records``)."""
        return len(self.uuids)


def _split(batch: RowBatch) -> tuple[RowBatch, list[int]]:
    """The batch's prediction rows as a batch, and the indexes of its rollup rows."""
    if all(k == RecordKind.PREDICTION for k in batch.kind):
        return batch, []
    keep = [i for i, k in enumerate(batch.kind) if k == RecordKind.PREDICTION]
    rolled = [i for i, k in enumerate(batch.kind) if k == RecordKind.ROLLUP]
    out = RowBatch()
    for name in ("kind", "uuid", "model_crn", "build_crn", "deployment_crn", "start_ms"):
        getattr(out, name).extend(getattr(batch, name)[i] for i in keep)
    for name in ("end_ms", "metrics", "tier_ms"):
        getattr(out, name).extend(getattr(batch, name)[i] for i in keep)
    return out, rolled


def _fold_bucket(rolled: RolledUp, batch: RowBatch, i: int, columns: Sequence[str]) -> None:
    summaries = orjson.loads(batch.metrics[i])
    rolled.buckets += 1
    records = summaries.get("_records")
    rolled.records += int(records) if isinstance(records, int | float) else 0
    width = batch.tier_ms[i] or (batch.end_ms[i] - batch.start_ms[i])
    rolled.last_end_ms = max(rolled.last_end_ms, batch.start_ms[i] + int(width))
    for column in columns:
        summary = summaries.get(column)
        if isinstance(summary, dict) and isinstance(summary.get("categories"), dict):
            counts = rolled.categories.setdefault(column, {})
            for category, count in summary["categories"].items():
                counts[str(category)] = counts.get(str(category), 0.0) + float(count)


def iter_window(
    access: MonitorAccess,
    deployment_crn: str,
    window: tuple[int, int],
    columns: Sequence[str],
    label: str | None,
    rolled: RolledUp,
    *,
    rollups: bool = True,
) -> Iterator[WindowData]:
    """The window's raw predictions one scan batch at a time (each a ``WindowData`` of at most
    ``_BATCH`` rows, its labels' arrival times read per batch); the rollup buckets met on the way
    are folded into ``rolled``. What ``read_window`` concatenates, and what a window too large
    for memory is streamed from (``modelyard.monitors.streamed``)."""
    start_ms, end_ms = window
    query = Query(
        deployment_crn=deployment_crn,
        start_ms=start_ms,
        end_ms=end_ms - 1,
        kinds=_KINDS if rollups else frozenset({RecordKind.PREDICTION}),
    )
    for raw in access.scan(query, _BATCH):
        batch, rollup_rows = _split(raw)
        for i in rollup_rows:
            _fold_bucket(rolled, raw, i, columns)
        if not len(batch):
            continue
        chunk = batch_to_frame([batch])
        frame = pd.DataFrame(
            {c: chunk[c] if c in chunk.columns else pd.Series([None] * len(chunk)) for c in columns}
        )
        uuids = [str(u) for u in chunk["predictionUuid"]]
        times = chunk["startTimeStampMs"].to_numpy(dtype=np.float64)
        label_ms = None
        if label is not None:
            first = access.label_times(deployment_crn, label, uuids)
            label_ms = np.array([first.get(u, np.nan) for u in uuids], dtype=np.float64)
        yield WindowData(frame, uuids, times, label_ms)


def concat_window(
    parts: Sequence[WindowData], columns: Sequence[str], label: str | None, rolled: RolledUp
) -> WindowData:
    """Chunks of ``iter_window`` as one ``WindowData``."""
    frame = (
        pd.concat([p.frame for p in parts], ignore_index=True)
        if parts
        else pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    )
    uuids = [u for p in parts for u in p.uuids]
    times = [p.prediction_ms for p in parts]
    prediction_ms = np.concatenate(times) if times else np.zeros(0, dtype=np.float64)
    label_ms = None
    if label is not None:
        found = [p.label_ms for p in parts if p.label_ms is not None]
        label_ms = np.concatenate(found) if found else np.zeros(0, dtype=np.float64)
    return WindowData(frame, uuids, prediction_ms, label_ms, rolled)


def read_window(
    access: MonitorAccess,
    deployment_crn: str,
    start_ms: int,
    end_ms: int,
    columns: Sequence[str],
    label: str | None,
    *,
    rollups: bool = True,
) -> WindowData:
    """Predictions with ``start_ms <= start < end_ms`` (end exclusive), monitored columns only,
    and (``rollups``) what the buckets starting in the window keep of the rest."""
    rolled = RolledUp()
    chunks = iter_window(
        access, deployment_crn, (start_ms, end_ms), columns, label, rolled, rollups=rollups
    )
    return concat_window(list(chunks), columns, label, rolled)
