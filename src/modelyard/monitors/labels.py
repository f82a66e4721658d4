"""A monitor run's label import: the ground truth of its ``labels:`` source, read first.

At the start of each run of a monitor whose spec has ``labels:`` (``specs.labels.LabelsSource``)
on a SQL or file connection (stream connections are consumed by the server instead,
``monitors.label_streams``), ``import_labels``:

1. reads the rows new since the monitor's watermark (``connectors.read.read_batches``: with a
   ``time_column``, rows at or after the watermark's time, in time order; at most ``max_rows``,
   the rest is read by the next run);
2. checks every row before anything is written: the key and label columns are there, uuids are
   uuids, labels are numbers, strings or booleans (nulls leave that key out); an error names the
   connection, the column and the row;
3. finds the predictions in bulk: by uuid, or through ``join`` (a value the predictions tracked
   as a metric, mapped to the latest prediction with it made within ``within`` before now, read
   with the store's scan);
4. stores the labels with ``add_delayed_many`` (``skip_unchanged``: rows read again, such as
   those sharing the watermark's time, are counted as duplicates and change nothing), in chunks
   of ``CHUNK`` items;
5. records the import in ``label_imports`` (rows read, matched, unmatched with a sample of ids,
   duplicates) and advances the watermark last, in the same registry transaction.

A failure (the query fails, the connection drops halfway, a bad column, uuid or label) is
recorded with its error, stores nothing of that read (every row is read and checked before the
first write) and leaves the watermark where it was: the next run starts where the last good one
ended. The run then fails with that error.

Where the run is (``MonitorAccess``): in-process (``EmbeddedAccess``, the registry and the store
directly) or in a job run (``RemoteAccess``, the server's REST routes); credentials come from the
run's environment either way (``Credentials.from_env``: a job run is given the secrets of the
connections its spec names).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson
import pandas as pd

from modelyard.clock import now_ms
from modelyard.connectors.base import STREAM_KINDS, Connection, ConnectorError, Source
from modelyard.errors import InvalidInput, ModelyardError
from modelyard.registry import KEEP_WATERMARK, ImportRecord
from modelyard.specs.labels import LabelsSource, check_label_value
from modelyard.store.base import Query, RecordKind

if TYPE_CHECKING:
    from modelyard.monitors.access import MonitorAccess
    from modelyard.specs.monitor import MonitorSpec

__all__ = ["CHUNK", "decode_watermark", "encode_watermark", "import_labels", "log"]

log = logging.getLogger(__name__)  # one INFO line per import (``python -m modelyard.monitors``)
CHUNK = 100_000  # items per add_delayed_many call
BATCH_ROWS = 100_000  # rows per read from the source
SAMPLE = 20  # unmatched ids kept per import
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


# -- watermarks ---------------------------------------------------------------------------------
def encode_watermark(value: Any) -> Any:
    """A time column's value as JSON kept by the registry (a tagged timestamp, or a number or
    string as is)."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(
            f"a time_column value {value!r:.60} ({type(value).__name__}) cannot be a watermark; "
            "use a timestamp, a date, a number or a string column"
        )
    return value


def decode_watermark(value: Any) -> Any:
    """What ``encode_watermark`` kept, as the value the connector compares the column with."""
    if isinstance(value, dict):
        if "datetime" in value:
            return dt.datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return dt.date.fromisoformat(value["date"])
    return value


# -- reading and checking -----------------------------------------------------------------------
@dataclass
class _Read:
    """What one import read: checked frames (key column, label columns), the newest time."""

    frames: list[pd.DataFrame] = field(default_factory=list)
    rows: int = 0
    newest: Any = None


def _what(src: LabelsSource) -> str:
    return f"labels from connection {src.connection!r}"


def _check_frame(src: LabelsSource, frame: pd.DataFrame, offset: int) -> pd.DataFrame:
    """The batch's key and label columns, checked (InvalidInput naming connection, column and
    row: rows are numbered from 1 in the order read)."""
    what = _what(src)
    missing = [c for c in src.source_columns if c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"{what}: column {missing[0]!r} is not in what the source returned (columns: "
            f"{[str(c) for c in frame.columns][:30]!r}); fix the spec's labels field",
            connection=src.connection,
            column=missing[0],
        )
    key = frame[src.key_column]
    nulls = np.flatnonzero(key.isna().to_numpy())
    if len(nulls):
        raise InvalidInput(
            f"{what}, column {src.key_column!r}, row {offset + nulls[0] + 1}: the value is "
            "null; every row needs the value that finds its prediction",
            connection=src.connection,
            column=src.key_column,
        )
    if src.uuid_column is not None:
        key = _uuids(src, key, offset)
    out = {src.key_column: key.to_numpy()}
    for source, target in src.columns:
        out[target] = _labels(src, frame[source], source, offset)
    return pd.DataFrame(out, copy=False)


def _uuids(src: LabelsSource, key: pd.Series[Any], offset: int) -> pd.Series[Any]:
    """The key column as uuid strings, checked in bulk (pyarrow's regex over the whole column);
    a value that is not a uuid names its row."""
    # pyarrow comes with the connectors extra, which reading any labels: source needs; a monitor
    # without labels: (this module is imported by every run) must not need it.
    import pyarrow as pa
    import pyarrow.compute as pc

    strings = key.dtype == object
    if strings:
        try:  # strings (a COPY or Parquet read): no per-value Python, kept as they are
            text = pa.array(key.to_numpy(), type=pa.string(), from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):  # uuid.UUID objects, mixed values
            key = key.map(lambda v: str(v) if isinstance(v, uuidlib.UUID) else v)
            text = pa.array([v if isinstance(v, str) else None for v in key], type=pa.string())
            strings = False
    else:
        text = pa.array(key.astype(str).to_numpy(), type=pa.string())
    good = pc.fill_null(pc.match_substring_regex(text, _UUID.pattern), False)
    bad = np.flatnonzero(~good.to_numpy(zero_copy_only=False))
    if len(bad):
        value = key.iloc[bad[0]]
        raise InvalidInput(
            f"{_what(src)}, column {src.key_column!r}, row {offset + bad[0] + 1}: {value!r:.80} "
            f"is not a prediction uuid ({len(bad)} such rows in this batch); pick the column "
            "holding the predictionUuid, or use labels.join",
            connection=src.connection,
            column=src.key_column,
        )
    if strings:
        return key
    return pd.Series(text.to_numpy(zero_copy_only=False), index=key.index, copy=False)


def _labels(src: LabelsSource, column: pd.Series[Any], name: str, offset: int) -> np.ndarray:
    """A label column as values to store (None for a null)."""
    kind = column.dtype.kind
    if kind in "iub":
        return column.to_numpy(dtype=object)
    if kind == "f":
        values = column.to_numpy(dtype="float64")
        inf = np.flatnonzero(np.isinf(values))
        if len(inf):
            raise InvalidInput(
                f"{_what(src)}, column {name!r}, row {offset + inf[0] + 1}: the label "
                f"{values[inf[0]]!r} is not a finite number",
                connection=src.connection,
                column=name,
            )
        out = values.astype(object)
        out[np.isnan(values)] = None
        return out
    if kind == "O":
        values = column.to_numpy(dtype=object).copy()
        for i, value in enumerate(values):
            values[i] = check_label_value(
                value, f"{_what(src)}, column {name!r}, row {offset + i + 1}"
            )
        return values
    first = column.iloc[0] if len(column) else None
    raise InvalidInput(
        f"{_what(src)}, column {name!r}, row {offset + 1}: a label must be a number, a string "
        f"or a boolean, got {column.dtype} values ({first!r:.60}); cast it in the query",
        connection=src.connection,
        column=name,
    )


def _read(connection: Connection, credentials: Any, src: LabelsSource, after: Any) -> _Read:
    from modelyard.connectors.read import read_batches

    source = Source(
        table=src.table,
        query=src.query,
        path=src.path,
        format=src.format,
        time_column=src.time_column,
        columns=src.source_columns,
    )
    read = _Read()
    batches = read_batches(
        connection, credentials, source, after=after, batch_rows=BATCH_ROWS, limit=src.max_rows
    )
    for frame in batches:
        if frame.empty:
            continue
        checked = _check_frame(src, frame, read.rows)
        if src.time_column is not None:
            times = frame[src.time_column].dropna()
            if len(times):
                newest = times.max()
                read.newest = newest if read.newest is None else max(read.newest, newest)
        read.rows += len(frame)
        read.frames.append(checked)
    return read


# -- joining and storing ------------------------------------------------------------------------
def _join_map(
    access: MonitorAccess, src: LabelsSource, deployment: str, now: int
) -> dict[Any, str]:
    """join value -> uuid of the latest prediction that tracked it within ``within``."""
    assert src.join is not None
    metric = src.join.metric
    latest: dict[Any, tuple[int, str]] = {}
    query = Query(
        deployment_crn=deployment,
        start_ms=max(0, now - src.join.within_ms),
        end_ms=now,
        kinds=frozenset({RecordKind.PREDICTION}),
    )
    for batch in access.scan(query, 100_000):
        for uuid, start, text in zip(batch.uuid, batch.start_ms, batch.metrics, strict=True):
            if uuid is None:
                continue
            value = orjson.loads(text).get(metric)
            if value is None or isinstance(value, dict | list):
                continue
            seen = latest.get(value)
            if seen is None or start >= seen[0]:
                latest[value] = (start, uuid)
    return {value: uuid for value, (_, uuid) in latest.items()}


def _items(
    src: LabelsSource, frame: pd.DataFrame, join: dict[Any, str] | None
) -> list[tuple[str, dict[str, Any]] | tuple[None, Any]]:
    """(uuid, metrics) per row with at least one label value; (None, key) for a join value no
    prediction tracked."""
    keys = frame[src.key_column].tolist()
    targets = [t for _, t in src.columns]
    columns = [frame[t].tolist() for t in targets]
    if join is None and not any(None in col for col in columns):  # no nulls: built in bulk
        if len(targets) == 1:
            name = targets[0]
            return list(zip(keys, [{name: v} for v in columns[0]], strict=True))
        rows = [dict(zip(targets, row, strict=True)) for row in zip(*columns, strict=True)]
        return list(zip(keys, rows, strict=True))
    out: list[tuple[str, dict[str, Any]] | tuple[None, Any]] = []
    for i, key in enumerate(keys):
        metrics = {t: col[i] for t, col in zip(targets, columns, strict=True) if col[i] is not None}
        if not metrics:
            continue
        if join is not None:
            found = join.get(key)
            if found is None:
                out.append((None, key))
                continue
            key = found
        out.append((key, metrics))
    return out


@dataclass
class _Counts:
    matched: int = 0
    unmatched: int = 0
    duplicates: int = 0
    sample: list[str] = field(default_factory=list)

    def unknown(self, ids: Any) -> None:
        for value in ids:
            self.unmatched += 1
            if len(self.sample) < SAMPLE:
                self.sample.append(str(value)[:200])


def _store(
    access: MonitorAccess, src: LabelsSource, read: _Read, join: dict[Any, str] | None, tag: str
) -> _Counts:
    counts = _Counts()
    chunk: list[tuple[str, dict[str, Any]]] = []

    def flush() -> None:
        result = access.add_delayed_many(chunk, tag)
        counts.matched += result.stored + result.unchanged
        counts.duplicates += result.unchanged
        counts.unknown(result.unknown)
        chunk.clear()

    for frame in read.frames:
        found = _items(src, frame, join)
        if join is not None:
            counts.unknown([m for k, m in found if k is None])
            found = [item for item in found if item[0] is not None]
        items = cast("list[tuple[str, dict[str, Any]]]", found)
        done = 0
        while done < len(items):
            take = CHUNK - len(chunk)
            chunk += items[done : done + take]
            done += take
            if len(chunk) >= CHUNK:
                flush()
    if chunk:
        flush()
    return counts


def import_labels(
    spec: MonitorSpec, access: MonitorAccess, deployment: str, *, now: int | None = None
) -> ImportRecord | None:
    """Import the new rows of ``spec.labels`` (see the module docstring); None when the spec has
    no ``labels:`` or its connection is a stream (the server consumes those). Records the import
    either way; a failure is recorded, then raised (InvalidInput or ConnectorError naming the
    connection, column and row)."""
    src = spec.labels
    if src is None:
        return None
    connection, project_crn = access.connection(deployment, src.connection)
    if connection.kind in STREAM_KINDS:
        return None
    started = now_ms() if now is None else now
    before = access.label_watermark(spec.name, deployment)
    base: dict[str, Any] = {
        "monitor": spec.name,
        "connection": src.connection,
        "watermark_before": before,
    }
    try:
        credentials = access.credentials(connection)
        read = _read(connection, credentials, src, decode_watermark(before))
        join = _join_map(access, src, deployment, started) if src.join is not None else None
        counts = _store(access, src, read, join, f"labels:{spec.name} ({src.connection})")
        after = encode_watermark(read.newest) if read.newest is not None else before
    except (ModelyardError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
        failed = ImportRecord(**base, started_ms=started, finished_ms=now_ms(), error=message)
        access.record_import(spec.name, deployment, project_crn, failed, KEEP_WATERMARK)
        if isinstance(exc, ModelyardError):
            raise
        raise ConnectorError(f"{_what(src)}: {message}", connection=src.connection) from exc
    done = ImportRecord(
        **base,
        started_ms=started,
        finished_ms=now_ms(),
        rows_read=read.rows,
        matched=counts.matched,
        unmatched=counts.unmatched,
        duplicates=counts.duplicates,
        unmatched_sample=tuple(counts.sample),
        watermark_after=after,
    )
    kept = access.record_import(
        spec.name, deployment, project_crn, done, KEEP_WATERMARK if after is None else after
    )
    log.info("%s", kept.line())
    return kept
