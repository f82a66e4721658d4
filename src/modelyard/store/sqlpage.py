"""Column pages: one ``scan`` page of typed predictions fetched as a few long values, not rows.

A page of 10,000 rows fetched row by row costs Python a tuple and seven objects per row, and
then as many passes over them again to make columns. When a page's rows share one all-number
layout (the common case: ``typed``), the database can hand the page over column-wise instead:
the uuids joined by a separator, the times as text (or, on PostgreSQL, as packed int8), and the
packed numbers of every row as one byte string. Python then splits, parses and views them in C.
A page where that does not hold (several layouts, a layout with JSON values, rows stored before
schema version 7, a uuid containing the separator) is read row by row as before; delayed values
of a page are read separately, only for the rows that have some.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from modelyard.store.base import Identity, RecordKind, RowBatch
from modelyard.store.query import KIND_RANK, SortKey, Window
from modelyard.store.sqlread import kind_rows_sql, to_batch
from modelyard.store.sqltypes import Cursor, Execute
from modelyard.store.typed import Layout

__all__ = [
    "ColumnPage",
    "FetchedPage",
    "IntColumn",
    "PackedMetrics",
    "ScanPage",
    "fetch_column_page",
    "scan_page",
    "scan_pages",
]

_SEP = "\x1f"  # unit separator: never in JSON text, refused nowhere else (checked per page)

# The page's rows: one deployment's key range, in key order, at most ``limit`` of them.
_ROWS = (
    "SELECT uuid, start_ms, end_ms, layout_id, delayed, numbers FROM predictions "
    "WHERE deployment_id = ? AND start_ms >= ? AND start_ms <= ?{after} "
    "ORDER BY start_ms, uuid LIMIT ?"
)
_SQLITE = (
    "SELECT MIN(COALESCE(layout_id, -1)), MAX(layout_id), COUNT(delayed), "
    "group_concat(uuid, char(31)), group_concat(start_ms), group_concat(end_ms), "
    "CAST(group_concat(numbers, '') AS BLOB) FROM ({rows})"
)
# One layout throughout, and no row without one, is one minimum and one maximum (layout ids are
# positive, a row without one counts as -1); the number of rows is the numbers' length over the
# layout's row size (every aggregate costs the server about as much again per row).
# Aggregates take their input in the sorted subquery's order (PostgreSQL documents this for
# its aggregates; an ORDER BY inside each would sort the page four more times).
# Each row's times and numbers go into one byte string (fewer aggregates: each costs the
# server about as much as sending the rows).
_POSTGRES = (
    "SELECT MIN(COALESCE(layout_id, -1)), MAX(layout_id), COUNT(delayed), "
    "string_agg(uuid, chr(31)), NULL, NULL, "
    "string_agg(int8send(start_ms) || int8send(end_ms) || numbers, ''::bytea) FROM ({rows}) page"
)
_DELAYED = (
    "SELECT uuid, delayed FROM predictions WHERE deployment_id = ? AND start_ms >= ? "
    "AND start_ms <= ? AND (start_ms, uuid) >= (?, ?) AND (start_ms, uuid) <= (?, ?) "
    "AND delayed IS NOT NULL"
)


class IntColumn(list[int]):
    """A list of ints that also carries them as the int64 array it was made from (``array``),
    so that a reader wanting an array (the frame builder) takes it instead of converting back."""

    __slots__ = ("array",)

    def __init__(self, array: Any) -> None:
        super().__init__(array.tolist())
        self.array = array


class PackedMetrics:
    """``MetricColumns`` of a column page: one layout, every row's numbers in one buffer.

    Each row takes ``lead + layout.size`` bytes of ``numbers``, the first ``lead`` of which are
    not metrics (PostgreSQL's page puts each row's times there)."""

    def __init__(  # shape: the page's buffer and how its rows are laid out
        self, layout: Layout, numbers: bytes, n: int, delayed: list[str | None], lead: int = 0
    ) -> None:
        self.layout = layout
        self.packed = numbers
        self.n = n
        self.delayed = delayed
        self.has_delayed = any(delayed)
        self.lead = lead

    def columns(self) -> dict[str, Any]:
        from modelyard.store.typedcols import overlay_delayed, packed_columns

        cols = self._strided() if self.lead else packed_columns(self.layout, self.packed)
        if self.has_delayed:
            overlay_delayed(cols, self.delayed, self.n)
        return cols

    def _strided(self) -> dict[str, Any]:
        """The columns as views into ``packed`` past each row's lead (no copy of the buffer)."""
        import numpy as np

        base, lead = self.layout.dtype, self.lead
        names = base.names
        dtype = np.dtype(
            {
                "names": names,
                "formats": [base.fields[k][0] for k in names],
                "offsets": [base.fields[k][1] + lead for k in names],
                "itemsize": base.itemsize + lead,
            }
        )
        rows = np.frombuffer(self.packed, dtype=dtype)
        return {key: rows[f"f{pos}"] for pos, key in enumerate(self.layout.keys)}

    def texts(self) -> list[str]:
        import orjson

        layout, out = self.layout, []
        size, stride = layout.size, self.lead + layout.size
        for i in range(self.n):
            at = i * stride + self.lead
            metrics = layout.values(self.packed[at : at + size], "")
            delayed = self.delayed[i]
            if delayed is not None:
                metrics.update(orjson.loads(delayed))
            out.append(orjson.dumps(metrics).decode())
        return out


class ColumnPage:
    """What ``column_page`` read: the page's columns, ready for a ``RowBatch``."""

    def __init__(
        self, uuids: list[str], starts: IntColumn, ends: IntColumn, metrics: PackedMetrics
    ) -> None:
        self.uuids, self.starts, self.ends, self.metrics = uuids, starts, ends, metrics

    def __len__(self) -> int:
        return len(self.uuids)

    def batch(self, kind: RecordKind, identity: Identity) -> RowBatch:
        n = len(self.uuids)
        return RowBatch(
            kind=[kind.value] * n,
            uuid=self.uuids,  # type: ignore[arg-type]  # list is invariant; these are all str
            model_crn=[identity.model_crn] * n,
            build_crn=[identity.build_crn] * n,
            deployment_crn=[identity.deployment_crn] * n,
            start_ms=self.starts,
            end_ms=self.ends,
            tier_ms=[None] * n,
            columns=self.metrics,
        )


class FetchedPage:
    """A column page as the database returned it: what needs the cursor is done (the page's
    statement, its layout, its delayed values), the decoding (``decode``) is not, so that a
    reader fetching ahead decodes one page while the database prepares the next."""

    def __init__(  # shape: the page's summary row, as ``fetch_column_page`` checked it
        self,
        layout: Layout,
        uuids: str,
        starts: str | None,
        ends: str | None,
        numbers: bytes,
        late: list[tuple[str, str]],
        lead: int,
    ) -> None:
        self.layout, self.uuids, self.starts, self.ends = layout, uuids, starts, ends
        self.numbers, self.late, self.lead = numbers, late, lead
        self.count = len(numbers) // (lead + layout.size)

    def start_at(self, i: int) -> int:
        """Row ``i``'s start time (0 or -1) without decoding the page."""
        if self.starts is not None:  # SQLite: the times as text
            piece = self.starts.partition(",")[0] if i == 0 else self.starts.rpartition(",")[2]
            return int(piece)
        at = (i % self.count) * (self.lead + self.layout.size)
        return int.from_bytes(self.numbers[at : at + 8], "big", signed=True)

    def last_key(self) -> tuple[int, str]:
        return self.start_at(-1), self.uuids.rpartition(_SEP)[2]

    def decode(self) -> ColumnPage:
        import numpy as np

        n, ids = self.count, self.uuids.split(_SEP)
        if self.starts is not None and self.ends is not None:
            first = np.fromstring(self.starts, dtype=np.int64, sep=",")
            last = np.fromstring(self.ends, dtype=np.int64, sep=",")
        else:
            # Each row's times, as a view striding over the whole rows (the metrics stay put).
            pair = np.dtype([("s", ">i8"), ("e", ">i8")])
            stride = self.lead + self.layout.size
            rows_of = np.ndarray(n, dtype=pair, buffer=self.numbers, strides=(stride,))
            first, last = rows_of["s"].astype(np.int64), rows_of["e"].astype(np.int64)
        delayed: list[str | None] = [None] * n
        if self.late:
            at = {u: i for i, u in enumerate(ids)}
            for uuid, text in self.late:
                i = at.get(uuid)
                if i is not None:
                    delayed[i] = text
        metrics = PackedMetrics(self.layout, self.numbers, n, delayed, self.lead)
        return ColumnPage(ids, IntColumn(first), IntColumn(last), metrics)

    def batch(self, kind: RecordKind, identity: Identity) -> RowBatch:
        return self.decode().batch(kind, identity)


@dataclass(frozen=True, slots=True)
class ScanPage:
    """One page of ``SQLStore.scan`` as read: its row count, its last (start, tie) key, and the
    batch, decoded now (rows) or when asked (a ``FetchedPage``)."""

    kind: RecordKind
    identity: Identity
    page: RowBatch | FetchedPage
    count: int
    last: tuple[Any, Any]

    def batch(self) -> RowBatch:
        page = self.page
        return page if isinstance(page, RowBatch) else page.batch(self.kind, self.identity)


def scan_pages(store: Any, window: Window, dep_ids: list[int], size: int) -> Iterator[ScanPage]:
    """The pages of ``store.scan``: kind by kind, deployment by deployment, each its own short
    read, the next one's bounds from the last key of the one before (keyset pagination)."""
    for kind in sorted(window.kinds, key=KIND_RANK.__getitem__):
        rank = KIND_RANK[kind]
        for dep_id in dep_ids:
            after = window.after
            while True:
                bounds = (kind, dep_id, window, after, size)
                page = store._scan_read(lambda cur, b=bounds: scan_page(store, cur, *b))
                if page is None:
                    break
                yield page
                if page.count < size:
                    break
                after = (page.last[0], rank, page.last[1])


def scan_page(  # shape: one page of SQLStore.scan, its bounds as scan holds them
    store: Any,
    cur: Cursor,
    kind: RecordKind,
    dep_id: int,
    window: Window,
    after: SortKey | None,
    size: int,
) -> ScanPage | None:
    """A page of ``store.scan`` (``store`` an ``SQLStore``; ``cur`` from its ``_scan_read``),
    None when there is none: typed predictions column-wise where they can be (decoded later,
    by ``ScanPage.batch``), else row by row (decoded here, while the cursor is open)."""
    identity = store._ids.get(cur, dep_id)
    layouts = store._layout_getter(cur)
    if kind is RecordKind.PREDICTION and (after is None or after[1] == KIND_RANK[kind]):
        bounds = (dep_id, window.start_ms, window.end_ms)
        key = None if after is None else (after[0], str(after[2]))
        page = fetch_column_page(cur, store._exec, store.dialect, layouts, bounds, key, size)
        if page is not None:
            return ScanPage(kind, identity, page, page.count, page.last_key())
    sql, params = kind_rows_sql(kind, [dep_id], window, after, size, with_deployment=False)
    rows = store._exec(cur, sql, params).fetchall()
    if not rows:
        return None
    batch = to_batch(kind, rows, identity, layouts)
    return ScanPage(kind, identity, batch, len(rows), (rows[-1][0], rows[-1][1]))


def fetch_column_page(  # shape: the page's bounds, as ``scan`` holds them
    cur: Cursor,
    execute: Execute,
    dialect: str,
    layouts: Any,
    window: tuple[int, int, int],
    after: tuple[int, str] | None,
    limit: int,
) -> FetchedPage | None:
    """The page of deployment ``window[0]`` with ``window[1] <= start_ms <= window[2]`` after
    the key ``after``, column-wise; None when it must be read row by row (nothing is read then
    but the page's summary)."""
    dep_id, low, high = window
    if after is not None:  # the key bounds the index range itself: a seek, not a rescan
        low = max(low, after[0])
    rows = _ROWS.format(after="" if after is None else " AND (start_ms, uuid) > (?, ?)")
    sql = (_SQLITE if dialect == "sqlite" else _POSTGRES).format(rows=rows)
    params = [dep_id, low, high, *(after or ()), limit]
    if dialect == "sqlite":
        found = execute(cur, sql, params).fetchone()
    else:  # binary results: the byte strings as they are, not hex text
        found = cur.execute(sql.replace("?", "%s"), params, binary=True).fetchone()
    low_id, high_id, delayed, uuids, starts, ends, numbers = found
    if low_id is None or low_id != high_id:  # no rows, several layouts, or a row without one
        return None
    layout: Layout = layouts(low_id)
    lead = 0 if dialect == "sqlite" else 16  # PostgreSQL: start and end lead each row
    if not layout.all_numeric or not numbers or len(numbers) % (lead + layout.size):
        return None
    page = FetchedPage(layout, uuids, starts, ends, bytes(numbers), [], lead)
    if uuids.count(_SEP) + 1 != page.count:  # a uuid holding the separator
        return None
    if delayed:
        begin, end = page.start_at(0), page.start_at(-1)
        first, last = uuids.partition(_SEP)[0], uuids.rpartition(_SEP)[2]
        bounds = (dep_id, begin, end, begin, first, end, last)
        page.late = execute(cur, _DELAYED, bounds).fetchall()
    return page
