"""One window of a deployment, read in batches and kept as the few columns a monitor needs.

The window is read with the SDK's frame builder over the store's ``scan`` (bounded batches);
each batch keeps only the feature, prediction, label, uuid and time columns, so memory grows with
the window's rows times the monitored columns, not with everything each record carries.
When a label is monitored, the arrival time of each prediction's first label comes from the
store's provenance table (``delayed_metrics``), looked up by uuid in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelyard.store import sqlaccess
from modelyard.store.base import MetricsStore, Query, RecordKind
from modelyard.tracking.frame import batch_to_frame

__all__ = ["WindowData", "read_window"]

_BATCH = 20_000
_IN_CHUNK = 500


@dataclass
class WindowData:
    """The monitored columns of one window; ``label_ms`` is NaN where no label has arrived."""

    frame: pd.DataFrame  # features, prediction and label columns
    uuids: list[str]
    prediction_ms: np.ndarray[Any, np.dtype[np.float64]]
    label_ms: np.ndarray[Any, np.dtype[np.float64]] | None

    @property
    def n(self) -> int:
        return len(self.uuids)


def read_window(
    store: MetricsStore,
    deployment_crn: str,
    start_ms: int,
    end_ms: int,
    columns: Sequence[str],
    label: str | None,
) -> WindowData:
    """Predictions with ``start_ms <= start < end_ms`` (end exclusive), monitored columns only."""
    query = Query(
        deployment_crn=deployment_crn,
        start_ms=start_ms,
        end_ms=end_ms - 1,
        kinds=frozenset({RecordKind.PREDICTION}),
    )
    parts: list[pd.DataFrame] = []
    uuids: list[str] = []
    times: list[Any] = []
    for batch in store.scan(query, _BATCH):
        chunk = batch_to_frame([batch])
        parts.append(
            pd.DataFrame(
                {
                    c: chunk[c] if c in chunk.columns else pd.Series([None] * len(chunk))
                    for c in columns
                }
            )
        )
        uuids.extend(str(u) for u in chunk["predictionUuid"])
        times.append(chunk["startTimeStampMs"].to_numpy(dtype=np.float64))
    frame = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    )
    prediction_ms = np.concatenate(times) if times else np.zeros(0, dtype=np.float64)
    label_ms = _label_times(store, uuids, label) if label is not None else None
    return WindowData(frame, uuids, prediction_ms, label_ms)


def _label_times(
    store: MetricsStore, uuids: list[str], key: str
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """When each prediction's first value of ``key`` arrived (NaN if none has)."""
    first: dict[str, int] = {}
    with sqlaccess.reading(store) as cur:
        for i in range(0, len(uuids), _IN_CHUNK):
            chunk = uuids[i : i + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = cur.execute(
                sqlaccess.sql(
                    store,
                    "SELECT uuid, MIN(tracked_ms) FROM delayed_metrics "
                    f"WHERE key = ? AND uuid IN ({marks}) GROUP BY uuid",
                ),
                (key, *chunk),
            ).fetchall()
            first.update((str(u), int(t)) for u, t in rows)
    return np.array([first.get(u, np.nan) for u in uuids], dtype=np.float64)
