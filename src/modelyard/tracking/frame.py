"""Record batches to pandas DataFrames, column by column.

The store hands over column-wise ``RowBatch``es whose metrics are JSON text. Decoding all of a
batch's texts in one ``orjson.loads`` call and then pulling each metric key out as a list keeps the
per-row Python work to a dict lookup per key; pandas then converts each list in C. No DataFrame is
ever built from a list of row dicts.

Columns: ``kind`` (``prediction``, ``aggregate``, ``rollup``), ``predictionUuid``, ``modelCrn``,
``modelBuildCrn``, ``modelDeploymentCrn``, ``startTimeStampMs``, ``endTimeStampMs``, ``tierMs``
(bucket width of rollup rows, else missing), then one column per metric key in order of first
appearance. Nested dict values are flattened into dotted names (``features.age``); a key whose
values are sometimes dicts and sometimes not keeps the non-dict values under its own name. A metric
key that collides with an identifier column is named ``metrics.<key>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from modelyard.store.base import RowBatch

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ID_COLUMNS", "FrameBuilder", "batch_to_frame"]

ID_COLUMNS = (
    "kind",
    "predictionUuid",
    "modelCrn",
    "modelBuildCrn",
    "modelDeploymentCrn",
    "startTimeStampMs",
    "endTimeStampMs",
    "tierMs",
)
_ID_SET = frozenset(ID_COLUMNS)


def _flatten(name: str, values: list[Any], out: dict[str, list[Any]]) -> None:
    """Put ``values`` under ``name`` in ``out``, splitting dict values into dotted columns."""
    dict_type = dict
    if not any(type(v) is dict_type for v in values):
        out[name] = values
        return
    subkeys: dict[str, None] = {}
    for v in values:
        if type(v) is dict_type:
            subkeys.update(dict.fromkeys(v))
    if any(v is not None and type(v) is not dict_type for v in values):
        out[name] = [None if type(v) is dict_type else v for v in values]
    for sub in subkeys:
        _flatten(
            f"{name}.{sub}",
            [v.get(sub) if type(v) is dict_type else None for v in values],
            out,
        )


def _metric_columns(texts: list[str]) -> dict[str, list[Any]]:
    rows: list[dict[str, Any]] = orjson.loads("[" + ",".join(texts) + "]") if texts else []
    keys: dict[str, None] = {}
    first = rows[0].keys() if rows else ()
    # Records of one model usually share their keys: check cheaply before taking the union.
    if all(r.keys() == first for r in rows):
        keys = dict.fromkeys(first)
    else:
        for r in rows:
            keys.update(dict.fromkeys(r))
    out: dict[str, list[Any]] = {}
    for key in keys:
        _flatten(key if key not in _ID_SET else f"metrics.{key}", [r.get(key) for r in rows], out)
    return out


class FrameBuilder:
    """Accumulates batches' columns; ``frame()`` builds one DataFrame at the end.

    Columns are kept as Python lists and padded with None when a key appears in some batches only,
    so batches never need a ``pd.concat``.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.columns: dict[str, list[Any]] = {name: [] for name in ID_COLUMNS}

    def add(self, batch: RowBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        cols = self.columns
        cols["kind"].extend(batch.kind)
        cols["predictionUuid"].extend(batch.uuid)
        cols["modelCrn"].extend(batch.model_crn)
        cols["modelBuildCrn"].extend(batch.build_crn)
        cols["modelDeploymentCrn"].extend(batch.deployment_crn)
        cols["startTimeStampMs"].extend(batch.start_ms)
        cols["endTimeStampMs"].extend(batch.end_ms)
        cols["tierMs"].extend(batch.tier_ms)
        metric_cols = _metric_columns(batch.metrics)
        for name, values in metric_cols.items():
            column = cols.get(name)
            if column is None:
                column = cols[name] = [None] * self.rows
            column.extend(values)
        for name, column in cols.items():
            if name not in metric_cols and name not in _ID_SET:
                column.extend([None] * n)
        self.rows += n

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        cols = self.columns
        data: dict[str, Any] = {}
        for name, values in cols.items():
            if name in ("startTimeStampMs", "endTimeStampMs"):
                data[name] = pd.array(values, dtype="int64")
            elif name == "tierMs":
                data[name] = pd.array(values, dtype="Int64")
            else:
                data[name] = values
        return pd.DataFrame(data, columns=list(cols))


def batch_to_frame(batches: Iterable[RowBatch]) -> pd.DataFrame:
    """One DataFrame from the given batches (empty, with the identifier columns, if none)."""
    builder = FrameBuilder()
    for batch in batches:
        builder.add(batch)
    return builder.frame()
