"""Reference samples: the training data a deployment's windows are compared with.

A sample is kept by the registry (table ``monitor_references``, through ``Registry.monitors``) as
columnar JSON (orjson, one list per column plus its dtype) compressed with zlib: readable without
pickle or pyarrow, and safe to load from a database others can write to. At most ``MAX_ROWS`` rows
(100,000) are kept: a larger frame is replaced by a uniform random sample of that many rows
(seeded, so uploading the same frame twice stores the same sample). 100k rows are plenty for the
drift statistics: the standard error of a reference decile bin's share is then about 0.1
percentage point.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import orjson
import pandas as pd

from modelyard.errors import InvalidInput, NotFound
from modelyard.monitors._store import monitor_store
from modelyard.registry import Registry
from modelyard.store.base import MetricsStore

__all__ = [
    "MAX_ROWS",
    "ReferenceInfo",
    "connection_reference",
    "frame_from_columns",
    "list_references",
    "load_reference",
    "reference_columns",
    "upload_reference",
]

MAX_ROWS = 100_000
MAX_UPLOAD_ROWS = 1_000_000  # as POST /api/v1/references accepts (alerts_api.MAX_UPLOAD_ROWS)

ReferenceInfo = dict[str, Any]


def _column(series: pd.Series[Any]) -> tuple[str, list[Any]]:
    """The column's dtype name as kept, and its values as JSON-ready Python values."""
    kind = series.dtype.kind
    if kind in "iu":
        return "int64", series.astype("int64").tolist()
    if kind == "f":
        return "float64", [None if v != v else v for v in series.astype("float64").tolist()]
    if kind == "b":
        return "bool", series.tolist()
    values = series.astype(object).where(series.notna(), None).tolist()
    for v in values:
        if v is not None and not isinstance(v, str | int | float | bool):
            raise InvalidInput(
                f"reference column {series.name!r} holds {type(v).__name__} values; a reference "
                "keeps numbers, booleans and strings (convert dates to numbers or text)"
            )
    return "object", values


def upload_reference(
    frame: pd.DataFrame,
    deployment_crn: str,
    name: str = "training",
    *,
    max_rows: int = MAX_ROWS,
    store: MetricsStore | None = None,
) -> ReferenceInfo:
    """Keep ``frame`` (at most ``max_rows`` rows, sampled) as reference ``name`` of a deployment.

    Uploading under an existing name replaces that sample. Returns what was stored: ``rows``,
    ``total_rows`` (before sampling), ``columns``. NotFound if the store does not know the
    deployment.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"reference must be a pandas DataFrame, got {type(frame).__name__}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InvalidInput(
            f"reference frame is empty ({frame.shape[0]} rows, {frame.shape[1]} columns); "
            "upload the training sample the windows should be compared with"
        )
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise InvalidInput(f"reference name {name!r} must be a non-empty string of 100 or fewer")
    if type(max_rows) is not int or not 1 <= max_rows <= MAX_ROWS:
        raise InvalidInput(f"max_rows={max_rows!r} must be an int from 1 to {MAX_ROWS}")
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise InvalidInput(f"reference columns {columns!r} repeat a name; names must be unique")
    db = monitor_store(store)
    db.resolve(deployment_crn)  # NotFound naming the CRN if the store has never seen it
    total = int(frame.shape[0])
    sample = frame.sample(n=max_rows, random_state=0) if total > max_rows else frame
    dtypes, data = {}, {}
    for label, text in zip(frame.columns, columns, strict=True):
        dtypes[text], data[text] = _column(sample[label])
    blob = zlib.compress(orjson.dumps({"dtypes": dtypes, "data": data}), 6)
    rows = int(sample.shape[0])
    created = Registry(db).monitors.save_reference(deployment_crn, name, rows, total, columns, blob)
    return {
        "deployment_crn": deployment_crn,
        "name": name,
        "rows": rows,
        "total_rows": total,
        "columns": columns,
        "bytes": len(blob),
        "created_ms": created,
    }


def frame_from_columns(columns: dict[str, list[Any]], dtypes: dict[str, str]) -> pd.DataFrame:
    """A reference frame from its columnar JSON (``None`` is NaN in a float column)."""
    out: dict[str, pd.Series[Any]] = {}
    for name, values in columns.items():
        dtype = dtypes.get(name, "object")
        if dtype == "float64":
            out[name] = pd.Series([math.nan if v is None else v for v in values], dtype=dtype)
        elif dtype in ("int64", "bool"):
            out[name] = pd.Series(values, dtype=dtype)
        else:
            out[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(out, columns=list(columns))


def reference_columns(
    deployment_crn: str, name: str = "training", *, store: MetricsStore | None = None
) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """The stored sample as columnar JSON values and each column's dtype, in column order."""
    db = monitor_store(store)
    found = Registry(db).monitors.reference_data(deployment_crn, name)
    if found is None:
        known = [r["name"] for r in list_references(deployment_crn, store=db)]
        raise NotFound(
            f"deployment {deployment_crn} has no reference named {name!r}; it has "
            f"{known or 'none'} (upload one with modelyard.upload_reference or "
            "'modelyard monitors reference upload')",
            deployment=deployment_crn,
            name=name,
        )
    columns, data = found
    payload = orjson.loads(zlib.decompress(data))
    return (
        {c: payload["data"][c] for c in columns},
        {c: payload["dtypes"][c] for c in columns},
    )


def load_reference(
    deployment_crn: str, name: str = "training", *, store: MetricsStore | None = None
) -> pd.DataFrame:
    """The stored sample as a DataFrame; NotFound naming the deployment and the names it has."""
    columns, dtypes = reference_columns(deployment_crn, name, store=store)
    return frame_from_columns(columns, dtypes)


def list_references(
    deployment_crn: str | None = None, *, store: MetricsStore | None = None
) -> list[ReferenceInfo]:
    """Stored samples (all, or one deployment's), without their data."""
    return Registry(monitor_store(store)).monitors.references(deployment_crn)


def connection_reference(access: Any, deployment: str, source: Any) -> pd.DataFrame:
    """A reference read from a connection (``reference: {connection, table | query | path}``)
    with the limits of an uploaded one: at most ``MAX_UPLOAD_ROWS`` rows read (more is an error
    naming the connection and the limit), sampled down to ``MAX_ROWS`` as an upload is, and the
    same column types (numbers, booleans, strings). ``access`` is the run's ``MonitorAccess``,
    ``source`` the spec's ``ReferenceSource``."""
    from modelyard.connectors.base import Source
    from modelyard.connectors.read import read_frame

    connection, _ = access.connection(deployment, source.connection)
    frame = read_frame(
        connection,
        access.credentials(connection),
        Source(table=source.table, query=source.query, path=source.path, format=source.format),
        max_rows=MAX_UPLOAD_ROWS,
    )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InvalidInput(
            f"the reference from connection {source.connection!r} is empty ({frame.shape[0]} "
            "rows); point it at the training sample"
        )
    sample = frame.sample(n=MAX_ROWS, random_state=0) if len(frame) > MAX_ROWS else frame
    dtypes, data = {}, {}
    for label in sample.columns:
        dtypes[str(label)], data[str(label)] = _column(sample[label])
    return frame_from_columns(data, dtypes)
