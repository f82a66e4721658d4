"""Where a monitor's ground truth and reference data live: a spec's ``labels:`` and
``reference: {connection: ...}`` fields.

::

    labels:
      connection: crm            # required: a connection of the monitor's project
      table: outcomes            # SQL kinds: exactly one of table / query / path
      query: "SELECT ..."
      path: "labels/*.parquet"   # s3 / files kinds
      format: parquet            # optional (parquet | csv), default from the extension
      uuid_column: prediction_uuid           # exactly one of uuid_column / join
      join: {column: customer_id, metric: customer_id, within: 30d}
      columns: {churned: churned}   # source column -> delayed metric key; a list: same names;
                                    # default: [the spec's label]
      time_column: updated_at    # incremental reads (SQL / files); streams need none
      max_rows: 2000000          # per run; the rest is read by the next run

A *row* (a table row, a stream message's JSON object) becomes (uuid or join value, delayed
metrics) through ``LabelsSource.to_metrics``, which the monitor run's import
(``modelyard.monitors.labels``) and the stream consumers share. Every problem is an
``InvalidInput`` naming the field (``labels.columns``) or, for a row, the column and the row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.settings import parse_duration_ms

__all__ = [
    "DEFAULT_MAX_ROWS",
    "FORMATS",
    "JoinThrough",
    "LabelsSource",
    "ReferenceSource",
    "check_label_value",
]

DEFAULT_MAX_ROWS = 2_000_000
MAX_MAX_ROWS = 100_000_000
FORMATS = ("parquet", "csv")
_WHERE = ("table", "query", "path")
_LABELS_FIELDS = (
    "connection",
    *_WHERE,
    "format",
    "uuid_column",
    "join",
    "columns",
    "time_column",
    "max_rows",
)
_REFERENCE_FIELDS = ("connection", *_WHERE, "format")


def _text(value: Mapping[str, Any], key: str, field: str, required: bool = False) -> str | None:
    found = value.get(key)
    if found is None and not required:
        return None
    if not isinstance(found, str) or not found.strip():
        raise InvalidInput(
            f"monitor spec field '{field}.{key}'={found!r} is not accepted; give a non-empty string"
        )
    return found.strip()


def _where(value: Mapping[str, Any], field: str, stream: bool = False) -> dict[str, str | None]:
    """Exactly one of table / query / path (``stream``: or none, a stream connection names its
    stream or queue itself), and the format (from the extension by default)."""
    given = {k: _text(value, k, field) for k in _WHERE}
    chosen = [k for k, v in given.items() if v is not None]
    if len(chosen) > 1 or (not chosen and not stream):
        raise InvalidInput(
            f"monitor spec field '{field}' needs exactly one of 'table', 'query' (SQL "
            f"connections) and 'path' (s3 and files connections); got {chosen or 'none'}"
            + (" (none: a nats or rabbitmq connection)" if stream else "")
        )
    fmt = _text(value, "format", field)
    if fmt is not None and fmt.lower() not in FORMATS:
        raise InvalidInput(
            f"monitor spec field '{field}.format'={fmt!r} is not accepted; choose from "
            f"{', '.join(FORMATS)}"
        )
    if fmt is not None and given["path"] is None:
        raise InvalidInput(f"monitor spec field '{field}.format' applies to a 'path' only")
    return {**given, "format": fmt.lower() if fmt else None}


def _unknown(value: Mapping[str, Any], accepted: tuple[str, ...], field: str) -> None:
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"monitor spec field '{field}'={value!r} is not accepted; give a mapping with "
            f"{', '.join(accepted)}"
        )
    unknown = sorted(str(k) for k in value if k not in accepted)
    if unknown:
        raise InvalidInput(
            f"monitor spec field '{field}' has unknown key(s) {unknown!r}; accepted: "
            f"{', '.join(accepted)}"
        )


def check_label_value(value: Any, where: str) -> Any:
    """A delayed value read from a source as stored: None for a null (NaN, None: the key is left
    out), a number, a string or a boolean; anything else is an error naming ``where`` (the
    connection, column and row)."""
    if value is None:
        return None
    kind = type(value)
    if kind is bool or kind is str:
        return value
    if kind is int:
        return value
    if kind is float:
        return None if math.isnan(value) else _finite(value, where)
    if hasattr(value, "item") and hasattr(value, "dtype"):  # a NumPy scalar
        return check_label_value(value.item(), where)
    from decimal import Decimal

    if isinstance(value, Decimal):
        return check_label_value(float(value), where)
    raise InvalidInput(
        f"{where}: a label must be a number, a string or a boolean, got {type(value).__name__} "
        f"({value!r:.60}); cast it in the query or pick another column",
    )


def _finite(value: float, where: str) -> float:
    if math.isinf(value):
        raise InvalidInput(f"{where}: the label {value!r} is not a finite number")
    return value


@dataclass(frozen=True)
class JoinThrough:
    """Labels keyed by the caller's own id: ``column`` of the source holds the value the caller
    tracked as metric ``metric`` of its predictions; a label goes to the latest prediction with
    that value made at most ``within_ms`` before the label's time (or now)."""

    column: str
    metric: str
    within_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "metric": self.metric, "within": f"{self.within_ms}ms"}


@dataclass(frozen=True)
class LabelsSource:
    """A checked ``labels:`` field (see the module docstring)."""

    connection: str
    table: str | None = None
    query: str | None = None
    path: str | None = None
    format: str | None = None
    uuid_column: str | None = None
    join: JoinThrough | None = None
    columns: tuple[tuple[str, str], ...] = ()  # (source column, delayed metric key)
    time_column: str | None = None
    max_rows: int = DEFAULT_MAX_ROWS

    @classmethod
    def from_value(cls, value: Any, label: str | None) -> LabelsSource:
        field = "labels"
        _unknown(value, _LABELS_FIELDS, field)
        connection = _text(value, "connection", field, required=True)
        assert connection is not None
        where = _where(value, field, stream=True)  # none: a stream connection
        uuid_column = _text(value, "uuid_column", field)
        join = _join(value.get("join"))
        if (uuid_column is None) == (join is None):
            raise InvalidInput(
                "monitor spec field 'labels' needs exactly one of 'uuid_column' (the column "
                "holding the prediction uuid) and 'join' ({column, metric, within}: through a "
                "metric the predictions tracked)"
            )
        columns = _columns(value.get("columns"), label)
        key_column = uuid_column or (join.column if join else "")
        if any(source == key_column for source, _ in columns):
            raise InvalidInput(
                f"monitor spec field 'labels.columns' names {key_column!r}, the column that "
                "finds the prediction; list the label columns only"
            )
        max_rows = value.get("max_rows", DEFAULT_MAX_ROWS)
        if type(max_rows) is not int or not 1 <= max_rows <= MAX_MAX_ROWS:
            raise InvalidInput(
                f"monitor spec field 'labels.max_rows'={max_rows!r} is not accepted; give an "
                f"integer from 1 to {MAX_MAX_ROWS}"
            )
        return cls(
            connection=connection,
            table=where["table"],
            query=where["query"],
            path=where["path"],
            format=where["format"],
            uuid_column=uuid_column,
            join=join,
            columns=columns,
            time_column=_text(value, "time_column", field),
            max_rows=max_rows,
        )

    @property
    def key_column(self) -> str:
        """The column that finds the prediction: the uuid column, or the join's column."""
        return self.uuid_column or (self.join.column if self.join else "")

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Every column the import reads: the key, the labels, and the time column."""
        cols = [self.key_column, *(c for c, _ in self.columns)]
        if self.time_column and self.time_column not in cols:
            cols.append(self.time_column)
        return tuple(cols)

    def to_metrics(
        self, row: Mapping[str, Any], where: str = "a row"
    ) -> tuple[Any, dict[str, Any]]:
        """(uuid or join value, {delayed key: value}) of one row or message; nulls left out.
        InvalidInput naming ``where`` (connection and row) and the column at fault."""
        key = self.key_column
        if key not in row:
            raise InvalidInput(
                f"{where} has no column {key!r} (it has {sorted(map(str, row))[:20]!r}); "
                f"fix labels.{'uuid_column' if self.uuid_column else 'join.column'}"
            )
        metrics: dict[str, Any] = {}
        for source, target in self.columns:
            if source not in row:
                raise InvalidInput(
                    f"{where} has no label column {source!r} (it has "
                    f"{sorted(map(str, row))[:20]!r}); fix labels.columns"
                )
            value = check_label_value(row[source], f"{where}, column {source!r}")
            if value is not None:
                metrics[target] = value
        return row[key], metrics

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"connection": self.connection}
        for key in (*_WHERE, "format", "uuid_column", "time_column"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.join is not None:
            out["join"] = self.join.to_dict()
        out["columns"] = dict(self.columns)
        if self.max_rows != DEFAULT_MAX_ROWS:
            out["max_rows"] = self.max_rows
        return out


def _join(value: Any) -> JoinThrough | None:
    if value is None:
        return None
    field = "labels.join"
    _unknown(value, ("column", "metric", "within"), field)
    column = _text(value, "column", field, required=True)
    metric = _text(value, "metric", field) or column
    within = value.get("within", "30d")
    try:
        within_ms = parse_duration_ms(str(within), f"monitor spec field '{field}.within'")
    except InvalidInput as exc:
        raise InvalidInput(exc.message) from None
    assert column is not None and metric is not None
    return JoinThrough(column, metric, within_ms)


def _columns(value: Any, label: str | None) -> tuple[tuple[str, str], ...]:
    if value is None:
        if label is None:
            raise InvalidInput(
                "monitor spec field 'labels' has no 'columns' and the spec no 'label'; name "
                "the label column(s), e.g. columns: {churned: churned}"
            )
        return ((label, label),)
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        value = {c: c for c in value}
    if not isinstance(value, Mapping) or not value:
        raise InvalidInput(
            f"monitor spec field 'labels.columns'={value!r} is not accepted; give a list of "
            "columns or a mapping of source column to delayed metric key"
        )
    out = []
    for source, target in value.items():
        if not isinstance(source, str) or not source or not isinstance(target, str) or not target:
            raise InvalidInput(
                f"monitor spec field 'labels.columns' maps {source!r} to {target!r}; both must "
                "be non-empty names"
            )
        out.append((source, target))
    return tuple(out)


@dataclass(frozen=True)
class ReferenceSource:
    """``reference: {connection, table | query | path, format?}``: the reference sample read
    from a connection at each run, with the limits of an uploaded reference."""

    connection: str
    table: str | None = None
    query: str | None = None
    path: str | None = None
    format: str | None = None

    @classmethod
    def from_value(cls, value: Any) -> ReferenceSource:
        field = "reference"
        _unknown(value, _REFERENCE_FIELDS, field)
        connection = _text(value, "connection", field, required=True)
        assert connection is not None
        where = _where(value, field)
        return cls(connection, where["table"], where["query"], where["path"], where["format"])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"connection": self.connection}
        for key in (*_WHERE, "format"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out
