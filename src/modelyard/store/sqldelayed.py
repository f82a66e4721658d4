"""Delayed metrics in bulk: ``SQLStore.add_delayed_many`` and ``prediction_deployments``.

``add_delayed`` finds one uuid, merges one row and appends its history rows: three round trips
per uuid. A batch of hundreds of thousands of labels (a monitor's ``labels:`` import, the SDK's
batch form) instead goes through a temporary table in one transaction.

PostgreSQL: the common batch (distinct uuid strings, each with a dict of plain scalars) is checked
in bulk (one ``orjson`` dump per item, C loops over the whole batch, no per-item Python), anything
else item by item as SQLite does; the batch is COPYed as one text payload built in one go, merged
into each prediction row by one ``UPDATE ... FROM`` (``jsonb ||``)
from the batch, and its history rows are inserted by the database from the same JSON. Only the
uuids that UPDATE did not change (rolled up, unknown, unchanged) are looked up afterwards.
SQLite reads the raw rows' ``delayed`` in one join pass, merges them here and writes them back by
key (its writes are serial); every history row goes in one bulk load. The rare rolled-up uuid is
added to its bucket as ``add_delayed`` does (``sqlrollup.add_to_bucket``). Same merge semantics
on both: a later value for the same key wins, items of one uuid applied in batch order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from modelyard.errors import InvalidInput, NotFound
from modelyard.store import sqlrollup
from modelyard.store.base import DelayedBatch
from modelyard.store.encode import delayed_values
from modelyard.store.sqltypes import IN_CHUNK, Cursor, marks

if TYPE_CHECKING:
    from modelyard.store.sqlbase import SQLStore

__all__ = ["add_many", "deployments"]

_BATCH = "delayed_batch"


class _Group:
    """The items of one uuid: their values for history, merged in order."""

    __slots__ = ("count", "plain", "values")

    def __init__(self) -> None:
        self.count = 0
        self.plain: dict[str, Any] = {}
        self.values: list[tuple[str, str]] = []


_SCALARS = (str, int, bool, type(None))
_INF = float("inf")


def _plain_values(metrics: Any, source: str) -> list[tuple[str, str]] | None:
    """The common case checked fast: a non-empty dict of plain scalars under good keys (JSON
    text per value for history); None for anything else (``delayed_values`` decides)."""
    if type(metrics) is not dict or not metrics or "\x00" in source:
        return None
    out: list[tuple[str, str]] = []
    for key, value in metrics.items():
        if type(key) is not str or not key or "\x00" in key:
            return None
        kind = type(value)
        if kind is float:
            if value != value or value in (_INF, -_INF):
                return None
        elif kind not in _SCALARS:
            return None
        try:
            out.append((key, orjson.dumps(value).decode()))
        except orjson.JSONEncodeError:  # an integer beyond 64 bits: delayed_values says so
            return None
    return out


def _groups(
    items: Sequence[tuple[str, dict[str, Any]]], source: str, tracked_ms: int | None
) -> tuple[dict[str, _Group], int]:
    """Every item checked (before any SQL), grouped by uuid in first-seen order."""
    groups: dict[str, _Group] = {}
    when = delayed_values("-", {"-": 0}, source, tracked_ms)[2]  # checks source and tracked_ms
    for n, item in enumerate(items):
        try:
            uuid, metrics = item
        except (TypeError, ValueError):
            raise InvalidInput(
                f"item {n} of the batch must be a (prediction uuid, metrics dict) pair, "
                f"got {item!r:.80}"
            ) from None
        values = _plain_values(metrics, source) if type(uuid) is str and uuid else None
        if values is not None:
            plain = metrics
        else:
            try:
                values, plain, _ = delayed_values(uuid, metrics, source, when)
            except InvalidInput as exc:
                raise InvalidInput(f"item {n} of the batch: {exc.message}", item=n) from None
        if "\x00" in uuid:
            raise InvalidInput(f"item {n} of the batch: uuid={uuid!r} contains NUL", item=n)
        group = groups.get(uuid)
        if group is None:
            group = groups[uuid] = _Group()
        group.count += 1
        group.plain.update(plain)
        group.values += values
    return groups, when


def _load(
    store: SQLStore, cur: Cursor, table: str, columns: str, rows: list[tuple[Any, ...]]
) -> None:
    """Bulk insert ``rows`` into ``table`` (COPY in PostgreSQL, executemany in SQLite)."""
    if store.dialect == "postgres":
        with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)
        return
    n = columns.count(",") + 1
    cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks(n)})", rows)


def _temp_table(store: SQLStore, cur: Cursor, name: str, columns: str) -> None:
    if store.dialect == "postgres":
        cur.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
    else:
        cur.execute(f"DROP TABLE IF EXISTS temp.{name}")
        cur.execute(f"CREATE TEMP TABLE {name} ({columns})")


def _drop_temp(store: SQLStore, cur: Cursor) -> None:
    if store.dialect != "postgres":  # PostgreSQL drops them at commit
        cur.execute(f"DROP TABLE IF EXISTS temp.{_BATCH}")


def _same(stored: dict[str, Any], plain: dict[str, Any]) -> bool:
    """Every value of ``plain`` is already the stored value of its key (same JSON type)."""
    for key, value in plain.items():
        if key not in stored:
            return False
        old = stored[key]
        if old != value or type(old) is not type(value):
            return False
    return True


def _latest_history(store: SQLStore, cur: Cursor, uuids: list[str]) -> dict[str, dict[str, Any]]:
    """uuid -> its latest delayed value per key (for rolled-up uuids, whose row is gone)."""
    latest: dict[str, dict[str, Any]] = {}
    for i in range(0, len(uuids), IN_CHUNK):
        chunk = uuids[i : i + IN_CHUNK]
        rows = store._exec(
            cur,
            f"SELECT uuid, key, value FROM delayed_metrics WHERE uuid IN ({marks(len(chunk))}) "
            "ORDER BY id",
            chunk,
        ).fetchall()
        for uuid, key, value in rows:
            latest.setdefault(uuid, {})[key] = orjson.loads(value)
    return latest


def add_many(
    store: SQLStore,
    items: Sequence[tuple[str, dict[str, Any]]],
    source: str,
    tracked_ms: int | None = None,
    *,
    skip_unchanged: bool = False,
) -> DelayedBatch:
    """``MetricsStore.add_delayed_many`` over SQL (see the module docstring)."""
    if store.dialect == "postgres":
        return _add_many_pg(store, items, source, tracked_ms, skip_unchanged)
    groups, when = _groups(items, source, tracked_ms)
    if not groups:
        return DelayedBatch(stored=0)

    def transaction(cur: Cursor) -> DelayedBatch:
        try:
            return _write(store, cur, groups, source, when, skip_unchanged)
        finally:
            _drop_temp(store, cur)

    return store._write(transaction)


def _locate(store: SQLStore, cur: Cursor) -> tuple[dict[str, tuple[int, int]], list[Any]]:
    """SQLite: where each batch uuid is (uuid -> (deployment_id, start_ms)), and the raw rows
    among them with their ``delayed``, in one pass."""
    rows = cur.execute(
        "SELECT p.uuid, p.deployment_id, p.start_ms, pr.uuid, pr.delayed "
        f"FROM {_BATCH} b JOIN prediction_uuids p ON p.uuid = b.uuid "
        "LEFT JOIN predictions pr ON pr.deployment_id = p.deployment_id "
        "AND pr.start_ms = p.start_ms AND pr.uuid = p.uuid"
    ).fetchall()
    where = {str(r[0]): (int(r[1]), int(r[2])) for r in rows}
    return where, [(r[1], r[2], r[0], r[4]) for r in rows if r[3] is not None]


def _update(cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
    """SQLite: write the merged ``delayed`` of raw rows (deployment_id, start_ms, uuid, delayed)."""
    cur.executemany(
        "UPDATE predictions SET delayed = ? WHERE deployment_id = ? AND start_ms = ? AND uuid = ?",
        [(text, dep, start, uuid) for dep, start, uuid, text in rows],
    )


_Merged = tuple[dict[str, tuple[int, int]], set[str], list[str], int]


def _merge_here(
    store: SQLStore, cur: Cursor, groups: dict[str, _Group], skip_unchanged: bool
) -> _Merged:
    """SQLite: the raw rows' ``delayed`` read, merged here, written back (writes are serial).
    (where, raw uuids, changed raw uuids, unchanged items)."""
    _temp_table(store, cur, _BATCH, "uuid TEXT")
    _load(store, cur, _BATCH, "uuid", [(u,) for u in groups])
    where, raw = _locate(store, cur)
    changed: list[str] = []
    unchanged = 0
    merged_rows: list[tuple[Any, ...]] = []
    for dep_id, start, uuid, delayed in raw:
        group = groups[uuid]
        stored = {} if delayed is None else orjson.loads(delayed)
        if skip_unchanged and _same(stored, group.plain):
            unchanged += group.count
            continue
        stored.update(group.plain)
        merged_rows.append((dep_id, start, uuid, orjson.dumps(stored).decode()))
        changed.append(uuid)
    if merged_rows:
        _update(cur, merged_rows)
    return where, {row[2] for row in raw}, changed, unchanged


# PostgreSQL: the batch is COPYed as one text payload built in one go (a row per uuid: the uuid,
# its items' values as one JSON object for history, and its merged patch when that differs), then
# merged by one ``UPDATE ... FROM`` (``jsonb ||``) that returns the uuids it changed: no per-row
# round trip, no lock-then-rewrite, and a concurrent merge of the same row waits on the UPDATE's
# row lock and is applied on top. With ``skip_unchanged``, a row the patch would not change (same
# jsonb text after the merge: 1 and 1.0 differ) is left out. History rows are then inserted by
# the database from the same JSON (``json_each`` keeps each value's text as sent).
_MERGED = "(COALESCE(pr.delayed::jsonb, '{}'::jsonb) || COALESCE(b.patch, b.own)::jsonb)::text"
# A row's first labels (the common case) are the batch's own JSON text as it is: no jsonb
# round trip, about 15% of the UPDATE at 100k rows.
_FIRST_OR_MERGED = f"CASE WHEN pr.delayed IS NULL THEN COALESCE(b.patch, b.own) ELSE {_MERGED} END"
# The batch's rows are placed first (a MATERIALIZED CTE: each uuid looked up once in
# ``prediction_uuids``), then the UPDATE meets ``predictions`` on its whole key. Joined in one
# FROM, the planner guessed a single row out of ``predictions`` x ``prediction_uuids`` (three
# equalities, their selectivities multiplied) and put the batch table inside that loop: read once
# per row of the batch, 20,000 labels took 81 s instead of under one (quadratic), until the
# tables were analyzed.
_SQL_MERGE = (
    "WITH b AS MATERIALIZED ("
    f"SELECT t.uuid, t.own, t.patch, p.deployment_id, p.start_ms FROM {_BATCH} t "
    "JOIN prediction_uuids p ON p.uuid = t.uuid) "
    f"UPDATE predictions pr SET delayed = {_FIRST_OR_MERGED} FROM b "
    "WHERE pr.deployment_id = b.deployment_id AND pr.start_ms = b.start_ms AND pr.uuid = b.uuid"
)
_STORED = "COALESCE(pr.delayed::jsonb, '{}'::jsonb)::text"
_SQL_CHANGED = f" AND (pr.delayed IS NULL OR {_MERGED} IS DISTINCT FROM {_STORED})"
# For this transaction only: no JIT (json_each's guessed 100 rows a call make the history INSERT
# look costly enough to compile: about 0.25 s each time for nothing), the history's sort in
# memory, and the UPDATE's joins as index lookups per batch row. Left to itself the planner
# hashed every row of ``prediction_uuids`` (and then of ``predictions``) for each batch: 0.8 s a
# batch of 100k at 1M stored predictions, growing with the store; the lookups cost the same at
# any store size. The batch table is analyzed first: without its row count the planner once
# chose a loop over a table written just before that ran for minutes; with seq scans priced
# out, an inner loop over ``predictions`` is never a scan.
_SQL_PLAN = (
    f"ANALYZE {_BATCH}",
    "SET LOCAL jit = off",
    "SET LOCAL work_mem = '64MB'",
    "SET LOCAL enable_hashjoin = off",
    "SET LOCAL enable_mergejoin = off",
    "SET LOCAL enable_seqscan = off",
)
_SQL_PLAN_RESET = ("RESET enable_hashjoin", "RESET enable_mergejoin", "RESET enable_seqscan")
_SQL_HISTORY = (
    "INSERT INTO delayed_metrics (uuid, key, value, tracked_ms, source) "
    "SELECT b.uuid, e.key, e.value::text, %s, %s "
    f"FROM {_BATCH} b CROSS JOIN LATERAL json_each(b.own::json) WITH ORDINALITY e "
    "ORDER BY b.n, e.ordinality"
)
_COPY_SPECIAL = ("\\", "\t", "\n", "\r")


def _copy_escape(text: str) -> str:
    """A field of COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _escaped(fields: list[str]) -> list[str]:
    joined = "".join(fields)
    if any(c in joined for c in _COPY_SPECIAL):
        return [_copy_escape(f) for f in fields]
    return fields


def _escaped_or_none(fields: list[str | None]) -> list[str | None]:
    if all(f is None for f in fields):
        return fields
    return [None if f is None else _copy_escape(f) for f in fields]


class _Rows:
    """The batch as PostgreSQL loads it: a row per uuid in first-seen order (uuid, JSON of its
    items' values for history, merged patch or None when that is the same JSON), each uuid's
    item count (None: one each)."""

    __slots__ = ("counts", "own", "patch", "uuids")

    def __init__(
        self,
        uuids: list[str],
        own: list[str],
        patch: list[str | None],
        counts: dict[str, int] | None,
    ) -> None:
        self.uuids, self.own, self.patch, self.counts = uuids, own, patch, counts

    def count(self, uuid: str) -> int:
        return 1 if self.counts is None else self.counts[uuid]

    def plain(self, i: int) -> dict[str, Any]:
        merged = orjson.loads(self.patch[i] or self.own[i])
        assert isinstance(merged, dict)
        return merged

    def payload(self) -> str:
        patch = ["\\N" if p is None else p for p in _escaped_or_none(self.patch)]
        columns = (_escaped(self.uuids), _escaped(self.own), patch)
        lines = [f"{n}\t{u}\t{o}\t{p}\n" for n, (u, o, p) in enumerate(zip(*columns, strict=True))]
        return "".join(lines)


_MARKS = (b"null", b"[", b"\\u0000", b'"":')


def _fast_rows(items: Sequence[tuple[str, dict[str, Any]]]) -> _Rows | None:
    """The common batch checked in bulk (C loops, no per-item Python): distinct non-empty uuid
    strings, each with a non-empty dict of plain scalars under non-empty string keys. None when
    anything is otherwise (``_groups`` then checks and merges item by item)."""
    try:
        uuids = [uuid for uuid, _ in items]
        metrics = [values for _, values in items]
    except (TypeError, ValueError):
        return None
    if not uuids or set(map(type, uuids)) != {str} or set(map(type, metrics)) != {dict}:
        return None
    if len(set(uuids)) != len(uuids) or "" in uuids or "\x00" in "".join(uuids):
        return None
    try:  # the whole batch as one JSON array: one buffer, not a bytes object per item
        whole = orjson.dumps(metrics)[1:-1]
    except TypeError:  # a key that is not a string, an integer beyond 64 bits, numpy values
        return None
    # null: a NaN or infinity (orjson writes null) or a None; [ or a second {: a nested value;
    # {} an empty dict; a NUL in a key. Any of these (even inside a string): item by item.
    if whole.count(b"{") != len(metrics) or b"{}" in whole or any(m in whole for m in _MARKS):
        return None
    # Objects are split at "},{": no string holds a "{" (counted above), so only at their seams.
    own = [f"{{{part}}}" for part in whole[1:-1].decode().split("},{")]
    return _Rows(uuids, own, [None] * len(own), None)


def _rows_of(groups: dict[str, _Group]) -> _Rows:
    uuids = list(groups)
    own: list[str] = []
    patch: list[str | None] = []
    for group in groups.values():
        text = "{" + ",".join(f"{orjson.dumps(k).decode()}:{v}" for k, v in group.values) + "}"
        merged = orjson.dumps(group.plain).decode()
        own.append(text)
        patch.append(None if merged == text else merged)
    return _Rows(uuids, own, patch, {u: g.count for u, g in groups.items()})


def _add_many_pg(
    store: SQLStore,
    items: Sequence[tuple[str, dict[str, Any]]],
    source: str,
    tracked_ms: int | None,
    skip_unchanged: bool,
) -> DelayedBatch:
    """PostgreSQL (see the comment above ``_SQL_MERGE``)."""
    when = delayed_values("-", {"-": 0}, source, tracked_ms)[2]  # checks source and tracked_ms
    rows = _fast_rows(items)
    if rows is None:
        groups, _ = _groups(items, source, when)
        if not groups:
            return DelayedBatch(stored=0)
        rows = _rows_of(groups)
    payload = rows.payload()

    def transaction(cur: Cursor) -> DelayedBatch:
        return _write_pg(store, cur, rows, payload, source, when, skip_unchanged)

    return store._write(transaction)


def _load_batch(store: SQLStore, cur: Cursor, payload: str) -> None:
    """PostgreSQL: the batch table filled with ``payload`` (``_Rows.payload``), analyzed, and
    this transaction's planner settings made for ``_SQL_MERGE``."""
    _temp_table(store, cur, _BATCH, 'n INTEGER, uuid TEXT COLLATE "C", own TEXT, patch TEXT')
    with cur.copy(f"COPY {_BATCH} (n, uuid, own, patch) FROM STDIN") as copy:
        copy.write(payload)
    for setting in _SQL_PLAN:
        cur.execute(setting)


def _write_pg(
    store: SQLStore,
    cur: Cursor,
    rows: _Rows,
    payload: str,
    source: str,
    when: int,
    skip_unchanged: bool,
) -> DelayedBatch:
    _load_batch(store, cur, payload)
    sql = _SQL_MERGE + (_SQL_CHANGED if skip_unchanged else "") + " RETURNING pr.uuid"
    changed = [str(r[0]) for r in cur.execute(sql).fetchall()]
    for setting in _SQL_PLAN_RESET:  # the lookups below and the history INSERT plan freely
        cur.execute(setting)
    stored = len(changed) if rows.counts is None else sum(rows.counts[u] for u in changed)
    unchanged = 0
    unknown: tuple[str, ...] = ()
    left = set(rows.uuids).difference(changed)
    if left:  # rolled up, unknown, or (skip_unchanged) already holding these values
        where, raw = _find(store, cur, sorted(left))
        unchanged = sum(rows.count(u) for u in raw)
        rolled = [(i, u) for i, u in enumerate(rows.uuids) if u in where and u not in raw]
        history = _latest_history(store, cur, [u for _, u in rolled]) if skip_unchanged else {}
        kept: set[str] = set()
        gone: set[str] = set()
        for i, uuid in rolled:
            plain = rows.plain(i)
            if skip_unchanged and _same(history.get(uuid, {}), plain):
                unchanged += rows.count(uuid)
                continue
            dep_id, start = where[uuid]
            try:
                sqlrollup.add_to_bucket(store._rollup_db, cur, dep_id, start, uuid, plain)
            except NotFound:  # its bucket was removed by retention: nothing to add it to
                gone.add(uuid)
                continue
            kept.add(uuid)
            stored += rows.count(uuid)
        if len(kept) < len(left):  # no history for what was not stored
            cur.execute(f"DELETE FROM {_BATCH} WHERE uuid = ANY(%s)", (sorted(left - kept),))
        unknown = tuple(u for u in rows.uuids if u in left and (u not in where or u in gone))
    cur.execute(_SQL_HISTORY, (when, source))
    return DelayedBatch(stored=stored, unknown=unknown, unchanged=unchanged)


def _find(
    store: SQLStore, cur: Cursor, uuids: list[str]
) -> tuple[dict[str, tuple[int, int]], set[str]]:
    """PostgreSQL: where each of ``uuids`` is (uuid -> (deployment_id, start_ms)), and which of
    them are raw rows."""
    found = cur.execute(
        "SELECT p.uuid, p.deployment_id, p.start_ms, pr.uuid IS NOT NULL "
        "FROM prediction_uuids p LEFT JOIN predictions pr ON pr.deployment_id = p.deployment_id "
        "AND pr.start_ms = p.start_ms AND pr.uuid = p.uuid WHERE p.uuid = ANY(%s)",
        (uuids,),
    ).fetchall()
    where = {str(u): (int(d), int(t)) for u, d, t, _ in found}
    return where, {str(u) for u, _, _, is_raw in found if is_raw}


def _write(
    store: SQLStore,
    cur: Cursor,
    groups: dict[str, _Group],
    source: str,
    when: int,
    skip_unchanged: bool,
) -> DelayedBatch:
    where, raw_uuids, changed, unchanged = _merge_here(store, cur, groups, skip_unchanged)
    rolled = [u for u in where if u not in raw_uuids]
    gone: set[str] = set()
    if rolled:
        history = _latest_history(store, cur, rolled) if skip_unchanged else {}
        for uuid in rolled:
            group = groups[uuid]
            if skip_unchanged and _same(history.get(uuid, {}), group.plain):
                unchanged += group.count
                continue
            dep_id, start = where[uuid]
            try:
                sqlrollup.add_to_bucket(store._rollup_db, cur, dep_id, start, uuid, group.plain)
            except NotFound:  # its bucket was removed by retention: nothing to add it to
                gone.add(uuid)
                continue
            changed.append(uuid)
    history_rows = [
        (uuid, key, text, when, source) for uuid in changed for key, text in groups[uuid].values
    ]
    if history_rows:
        _load(store, cur, "delayed_metrics", "uuid, key, value, tracked_ms, source", history_rows)
    unknown = tuple(u for u in groups if u not in where or u in gone)
    return DelayedBatch(
        stored=sum(groups[u].count for u in changed), unknown=unknown, unchanged=unchanged
    )


def deployments(store: SQLStore, uuids: Sequence[str]) -> dict[str, str]:
    """``MetricsStore.prediction_deployments`` over SQL."""
    wanted = list(dict.fromkeys(u for u in uuids if isinstance(u, str) and "\x00" not in u))
    found: dict[str, int] = {}
    with store._reading() as cur:
        for i in range(0, len(wanted), IN_CHUNK * 10):
            chunk = wanted[i : i + IN_CHUNK * 10]
            sql = "SELECT uuid, deployment_id FROM prediction_uuids WHERE uuid IN "
            sql += f"({marks(len(chunk))})"
            found.update((str(u), int(d)) for u, d in store._exec(cur, sql, chunk).fetchall())
        store._ids.load(cur)
    by_id = store._ids.by_id
    return {u: by_id[d].deployment_crn for u, d in found.items() if d in by_id}
