"""The metrics store over SQL, shared by ``SQLiteStore`` and ``PostgresStore``.

Both backends run the same statements (written with ``?`` placeholders; PostgreSQL swaps them for
``%s``), so behaviour is identical by construction and one contract test covers both. A backend
supplies only what truly differs: connections and transactions (``_reading``, ``_write``), the
bulk insert route (``_insert_rows``: executemany in SQLite, COPY in PostgreSQL), row locking for
concurrent rollups, error translation and the size on disk.

Layout (see ``migrations/*.sql``): identities get an integer id that prediction, aggregate and
bucket rows carry (a model- or build-level query resolves to deployment ids from a small cached
table, then reads each deployment's index range). Raw predictions are keyed by
(deployment_id, start_ms, uuid), the read order. ``prediction_uuids`` maps every uuid ever stored
to (deployment_id, start_ms): it refuses duplicates and finds a prediction by uuid alone, raw or
rolled up. A prediction's delayed values are kept twice, merged into its row's ``delayed`` object
(what reads return) and once per value in ``delayed_metrics`` (provenance).

The class keeps the transactions; the rest is in modules of its own: ``identities`` (the
identity table and its cache), ``encode`` (checking records before any SQL), ``sqlread`` (page
statements, rows to records and batches), ``sqldelayed`` (delayed metrics in bulk),
``distribution``, ``schema`` (migrations) and
``sqlrollup``, which reaches the store only through ``sqlrollup.RollupDatabase``
(``StoreRollupDatabase`` below).
"""

from __future__ import annotations

import abc
import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, TypeVar

import orjson

from modelyard import settings
from modelyard.clock import now_ms
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.store import distribution as dist
from modelyard.store import labels, sqldelayed, sqlrollup
from modelyard.store.base import (
    DelayedValue,
    Distribution,
    Identity,
    MetricsStore,
    Prediction,
    Query,
    Record,
    RecordKind,
    RollupPolicy,
    RollupReport,
    RowBatch,
    StoreInfo,
)
from modelyard.store.encode import (
    aggregate_text,
    delayed_values,
    encode_predictions,
    is_int,
)
from modelyard.store.identities import Identities
from modelyard.store.query import KIND_RANK, check_window, encode_token
from modelyard.store.readahead import read_ahead
from modelyard.store.schema import apply_migrations, schema_version
from modelyard.store.sqlpage import scan_pages
from modelyard.store.sqlread import kind_rows_sql, to_record
from modelyard.store.sqltypes import IN_CHUNK, Cursor, marks
from modelyard.store.typed import Layout, Layouts
from modelyard.store.typedcols import numbers_in_column

__all__ = ["Cursor", "SQLStore", "StoreRollupDatabase"]

T = TypeVar("T")


class _Duplicate(Exception):
    """Raised inside a write transaction so it rolls back before the culprits are looked up."""


class SQLStore(MetricsStore):
    dialect: ClassVar[str]
    _placeholder: ClassVar[str] = "?"
    _for_update: ClassVar[str] = ""
    _read_ahead: ClassVar[bool] = False  # scan fetches a page on a thread while one is decoded
    location: str

    def __init__(self) -> None:
        self._ids = Identities(self._exec)
        self._layouts = Layouts(self._exec)
        self._rollup_db = StoreRollupDatabase(self)
        self._sql_cache: dict[str, str] = {}
        self._max_record_bytes: int = settings.get("max_record_bytes")

    # -- what a backend provides ----------------------------------------------------------------
    @abc.abstractmethod
    def _reading(self) -> AbstractContextManager[Cursor]:
        """A cursor inside a read transaction (one snapshot for the whole block)."""

    @abc.abstractmethod
    def _write(self, fn: Callable[[Cursor], T]) -> T:
        """Run ``fn`` in one write transaction, retrying while the database is busy."""

    @abc.abstractmethod
    def _insert_rows(self, cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
        """Bulk insert (deployment_id, start_ms, uuid, end_ms, metrics) rows into ``predictions``
        and (uuid, deployment_id, start_ms) into ``prediction_uuids`` (whose key refuses a
        duplicate uuid with the driver's unique violation)."""

    @abc.abstractmethod
    def _is_unique_violation(self, exc: BaseException) -> bool: ...

    @abc.abstractmethod
    def _size_bytes(self) -> int | None: ...

    def _lock_buckets(self, cur: Cursor) -> None:
        """Serialise transactions that change rollup buckets (no-op where writes are serial)."""

    def _prefer_index_order(self, cur: Cursor) -> None:
        """Make the next page query walk its index in order rather than sort (see PostgreSQL)."""

    def _scan_read(self, fn: Callable[[Cursor], T]) -> T:
        """``fn`` with a cursor for one ``scan`` page, its index walked in order."""
        with self._reading() as cur:
            self._prefer_index_order(cur)
            return fn(cur)

    # -- SQL helpers ----------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        if self._placeholder == "?":
            return sql
        text = self._sql_cache.get(sql)
        if text is None:
            text = self._sql_cache[sql] = sql.replace("?", self._placeholder)
        return text

    def _exec(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cur.execute(self._q(sql), tuple(params))
        return cur

    def _apply_migrations(self, cur: Cursor) -> int:
        """Bring the schema up to date inside the caller's (exclusive) transaction."""
        return apply_migrations(cur, self._exec, self.dialect, self.location)

    def _schema_version(self, cur: Cursor) -> tuple[int, str | None]:
        return schema_version(cur, self._exec)

    # -- identities -----------------------------------------------------------------------------
    def register_identity(self, identity: Identity) -> None:
        dep_id, _ = self._write(lambda cur: self._ids.ensure(cur, identity))
        self._ids.learn([(dep_id, identity)])

    def resolve(self, deployment_crn: str) -> Identity:
        cached = self._ids.by_crn.get(deployment_crn)
        if cached is None:
            with self._reading() as cur:
                self._ids.load(cur)
            cached = self._ids.by_crn.get(deployment_crn)
        if cached is None:
            raise NotFound(
                f"deployment {deployment_crn!r} is not known to this store; register it or "
                "write a prediction for it first",
                deployment_crn=deployment_crn,
            )
        return cached[1]

    # -- writes ---------------------------------------------------------------------------------
    def write_predictions(self, predictions: Sequence[Prediction]) -> None:
        if not predictions:
            return
        rows, unknown, layouts = encode_predictions(
            predictions, self._ids.by_crn, self._max_record_bytes, self._layouts
        )
        uuids = [row[2] for row in rows]
        if len(set(uuids)) != len(uuids):
            dups = sorted(u for u, n in Counter(uuids).items() if n > 1)
            raise Conflict(
                f"prediction uuids appear twice in one batch: {', '.join(dups[:5])}; "
                "each prediction needs its own uuid",
                uuids=dups[:100],
            )

        def transaction(cur: Cursor) -> list[tuple[int, Identity]]:
            learned: list[tuple[int, Identity]] = []
            batch = rows
            if unknown:
                ids: dict[str, int] = {}
                for crn, identity in unknown.items():
                    dep_id, fresh = self._ids.ensure(cur, identity)
                    ids[crn] = dep_id
                    if fresh:
                        learned.append((dep_id, identity))
                batch = [(ids[r[0]], *r[1:]) if isinstance(r[0], str) else r for r in rows]
            if layouts:
                batch = self._layouts.assign(cur, batch, layouts, new_layouts)
            try:
                self._insert_rows(cur, batch)
            except Exception as exc:
                if self._is_unique_violation(exc):
                    raise _Duplicate from exc
                raise
            return learned

        new_layouts: list[tuple[int, Layout]] = []
        try:
            learned = self._write(transaction)
        except _Duplicate:
            with self._reading() as cur:
                taken = self._existing(cur, uuids)
            raise Conflict(
                f"prediction uuids already stored: {', '.join(sorted(taken)[:5])}; "
                "nothing of this batch was written (drop those records and write the rest)",
                uuids=sorted(taken)[:100],
            ) from None
        self._ids.learn(learned)
        self._layouts.learn(new_layouts)

    def _existing(self, cur: Cursor, uuids: Sequence[str]) -> list[str]:
        """Which of ``uuids`` are already stored (raw or rolled up)."""
        found: list[str] = []
        for i in range(0, len(uuids), IN_CHUNK):
            chunk = uuids[i : i + IN_CHUNK]
            sql = f"SELECT uuid FROM prediction_uuids WHERE uuid IN ({marks(len(chunk))})"
            found += [row[0] for row in self._exec(cur, sql, chunk).fetchall()]
        return found

    def add_delayed(
        self, uuid: str, metrics: dict[str, Any], source: str, tracked_ms: int | None = None
    ) -> None:
        values, plain, when = delayed_values(uuid, metrics, source, tracked_ms)

        def transaction(cur: Cursor) -> None:
            where = self._exec(
                cur, "SELECT deployment_id, start_ms FROM prediction_uuids WHERE uuid = ?", (uuid,)
            ).fetchone()
            if where is None:
                raise NotFound(
                    f"no prediction with uuid {uuid!r} is stored (raw or rolled up); "
                    "pass the predictionUuid a prediction returned",
                    uuid=uuid,
                )
            key = (where[0], where[1], uuid)
            row = self._exec(
                cur,
                "SELECT delayed FROM predictions "
                "WHERE deployment_id = ? AND start_ms = ? AND uuid = ?" + self._for_update,
                key,
            ).fetchone()
            if row is not None:
                merged = {} if row[0] is None else orjson.loads(row[0])
                merged.update(plain)
                self._exec(
                    cur,
                    "UPDATE predictions SET delayed = ? "
                    "WHERE deployment_id = ? AND start_ms = ? AND uuid = ?",
                    (orjson.dumps(merged).decode(), *key),
                )
            else:
                sqlrollup.add_to_bucket(self._rollup_db, cur, where[0], where[1], uuid, plain)
            cur.executemany(
                self._q(
                    "INSERT INTO delayed_metrics (uuid, key, value, tracked_ms, source) "
                    "VALUES (?, ?, ?, ?, ?)"
                ),
                [(uuid, k, text, when, source) for k, text in values],
            )

        self._write(transaction)

    # Delayed metrics in bulk: in a module of their own (temporary tables, one transaction).
    add_delayed_many = sqldelayed.add_many
    prediction_deployments = sqldelayed.deployments

    def prediction_identity(self, uuid: str) -> Identity:
        if not isinstance(uuid, str) or not uuid or "\x00" in uuid:
            raise InvalidInput(f"uuid={uuid!r} must be a prediction's uuid string")
        with self._reading() as cur:
            row = self._exec(
                cur, "SELECT deployment_id FROM prediction_uuids WHERE uuid = ?", (uuid,)
            ).fetchone()
            identity = None if row is None else self._ids.get(cur, int(row[0]))
        if identity is None:
            raise NotFound(f"no prediction with uuid {uuid!r} is stored", uuid=uuid)
        return identity

    def find_prediction(self, uuid: str) -> Record:
        if not isinstance(uuid, str) or not uuid or "\x00" in uuid:
            raise InvalidInput(f"uuid={uuid!r} must be a prediction's uuid string")
        with self._reading() as cur:
            row = self._exec(
                cur, "SELECT deployment_id, start_ms FROM prediction_uuids WHERE uuid = ?", (uuid,)
            ).fetchone()
            identity = None if row is None else self._ids.get(cur, row[0])
        if row is None or identity is None:
            raise NotFound(f"no prediction with uuid {uuid!r} is stored", uuid=uuid)
        start = int(row[1])
        # The uuid index gives (deployment, start_ms): one index range of one millisecond.
        query = Query(
            deployment_crn=identity.deployment_crn,
            start_ms=start,
            end_ms=start,
            kinds=frozenset({RecordKind.PREDICTION}),
        )
        for record in self.read(query)[0]:
            if record.uuid == uuid:
                return record
        raise NotFound(
            f"prediction {uuid!r} was rolled up into a bucket; only its bucket's summaries remain "
            "(read the rollup records around its time instead)",
            uuid=uuid,
        )

    def delayed_history(self, uuid: str) -> list[DelayedValue]:
        with self._reading() as cur:
            rows = self._exec(
                cur,
                "SELECT key, value, tracked_ms, source FROM delayed_metrics WHERE uuid = ? "
                "ORDER BY id",
                (uuid,),
            ).fetchall()
        return [DelayedValue(k, orjson.loads(v), int(t), s) for k, v, t, s in rows]

    def add_aggregate(
        self, deployment_crn: str, start_ms: int, end_ms: int, metrics: dict[str, Any]
    ) -> None:
        text = aggregate_text(start_ms, end_ms, metrics)
        dep_id = self._aggregate_target(deployment_crn)
        self._write(
            lambda cur: self._exec(
                cur,
                "INSERT INTO aggregates (deployment_id, start_ms, end_ms, metrics, created_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (dep_id, start_ms, end_ms, text, now_ms()),
            )
        )

    def replace_aggregate(
        self,
        deployment_crn: str,
        start_ms: int,
        end_ms: int,
        metrics: dict[str, Any],
        source: str,
    ) -> None:
        if not isinstance(source, str) or not source:
            raise InvalidInput(
                f"aggregate source must be a non-empty string such as 'monitor:churn', "
                f"got {source!r}"
            )
        text = aggregate_text(start_ms, end_ms, metrics)
        dep_id = self._aggregate_target(deployment_crn)

        def transaction(cur: Cursor) -> None:
            self._exec(
                cur,
                "DELETE FROM aggregates WHERE deployment_id = ? AND start_ms = ? AND end_ms = ? "
                "AND source = ?",
                (dep_id, start_ms, end_ms, source),
            )
            self._exec(
                cur,
                "INSERT INTO aggregates "
                "(deployment_id, start_ms, end_ms, metrics, created_ms, source) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (dep_id, start_ms, end_ms, text, now_ms(), source),
            )

        self._write(transaction)

    def _aggregate_target(self, deployment_crn: str) -> int:
        """The deployment's integer id; InvalidInput naming the CRN if the store does not know it
        (an unknown identifier is bad input, as in reads; NotFound is for unknown uuids)."""
        dep_id = self._ids.by_crn.get(deployment_crn, (None,))[0]
        if dep_id is None:
            try:
                self.resolve(deployment_crn)
            except NotFound:
                raise InvalidInput(
                    f"unknown identifier: deployment {deployment_crn!r} is not known to this "
                    "store; pass the CRN of a deployment that recorded predictions (or register "
                    "it first)",
                    deployment_crn=deployment_crn,
                ) from None
            dep_id = self._ids.by_crn[deployment_crn][0]
        return int(dep_id)

    # -- reads ----------------------------------------------------------------------------------
    def _page(self, cur: Cursor, statement: tuple[str, list[Any]]) -> list[tuple[Any, ...]]:
        """The rows of one ``sqlread.kind_rows_sql`` statement, its index walked in order."""
        sql, params = statement
        self._prefer_index_order(cur)
        rows: list[tuple[Any, ...]] = self._exec(cur, sql, params).fetchall()
        return rows

    def _record(self, cur: Cursor, kind: RecordKind, row: tuple[Any, ...]) -> Record:
        return to_record(kind, self._ids.get(cur, row[0]), row, self._layout_getter(cur))

    def _layout_getter(self, cur: Cursor) -> Callable[[int], Layout]:
        layouts = self._layouts
        return lambda layout_id: layouts.get(cur, layout_id)

    def read(self, query: Query) -> tuple[list[Record], str | None]:
        window = check_window(query)
        with self._reading() as cur:
            dep_ids = self._ids.select(cur, query)
            if not dep_ids or not window.kinds:
                return [], None
            fetch = None if window.limit is None else window.limit + 1
            # One ordered index range per (kind, deployment), merged here: a single query over
            # several deployments would sort the whole rest of the window for every page.
            streams = []
            for kind in sorted(window.kinds, key=KIND_RANK.__getitem__):
                rank = KIND_RANK[kind]
                for dep_id in dep_ids:
                    rows = self._page(
                        cur, kind_rows_sql(kind, [dep_id], window, window.after, fetch)
                    )
                    if rows:
                        streams.append([((row[1], rank, row[2]), kind, row) for row in rows])
            merged = list(heapq.merge(*streams, key=lambda item: item[0]))
            token = None
            if window.limit is not None and len(merged) > window.limit:
                merged = merged[: window.limit]
                token = encode_token(merged[-1][0])
            records = [self._record(cur, kind, row) for _, kind, row in merged]
        return records, token

    def recent(self, query: Query, limit: int) -> list[Record]:
        if not is_int(limit) or limit < 1:
            raise InvalidInput(f"limit={limit!r} must be a positive integer")
        window = check_window(query)
        with self._reading() as cur:
            dep_ids = self._ids.select(cur, query)
            streams = []
            for kind in sorted(window.kinds, key=KIND_RANK.__getitem__):
                rank = KIND_RANK[kind]
                for dep_id in dep_ids:  # each its own backward index range, at most ``limit``
                    page = kind_rows_sql(kind, [dep_id], window, None, limit, newest_first=True)
                    rows = self._page(cur, page)
                    streams.append([((row[1], rank, row[2]), kind, row) for row in rows])
            merged = heapq.merge(*streams, key=lambda item: item[0], reverse=True)
            return [
                self._record(cur, kind, row) for _, kind, row in itertools.islice(merged, limit)
            ]

    def scan(self, query: Query, batch_size: int = 100_000) -> Iterator[RowBatch]:
        """Batches kind by kind (predictions, aggregates, rollups), deployment by deployment.

        Within one deployment and kind, rows come in sort order. Going one deployment at a time
        keeps every batch an index range read (no sort, even for a model with many
        deployments). Every batch is its own short read (keyset pagination), so no transaction
        or lock is held while the caller works on a batch, and memory stays bounded by
        ``batch_size``.
        """
        if not is_int(batch_size) or batch_size < 1:
            raise InvalidInput(f"batch_size={batch_size!r} must be a positive integer")
        window = check_window(query)
        with self._reading() as cur:
            dep_ids = self._ids.select(cur, query)
        pages = scan_pages(self, window, dep_ids, batch_size)
        for page in read_ahead(pages) if self._read_ahead else pages:
            yield page.batch()

    def distribution(
        self,
        query: Query,
        key: str,
        quantiles: Sequence[float] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99),
        bins: int = 20,
    ) -> Distribution:
        """Exact from raw rows when the window holds no buckets; else merged sketches."""
        qs = dist.check_request(key, quantiles, bins)
        window = check_window(query)
        values: list[float] = []
        if RecordKind.PREDICTION in window.kinds:
            values = self._raw_numbers(dist.one_kind(query, window, RecordKind.PREDICTION), key)
        blobs: list[bytes] = []
        if RecordKind.ROLLUP in window.kinds:
            rollups = dist.one_kind(query, window, RecordKind.ROLLUP)
            with self._reading() as cur:
                dep_ids = self._ids.select(cur, rollups)
                if dep_ids:
                    rollup_window = check_window(rollups)
                    page = kind_rows_sql(RecordKind.ROLLUP, dep_ids, rollup_window, None, None)
                    rows = self._page(cur, page)
                    blobs = [bytes(row[4]) for row in rows]
        return dist.summarise(key, values, blobs, qs, bins)

    def _raw_numbers(self, query: Query, key: str) -> list[float]:
        """Finite numbers under ``key`` in the raw predictions (a delayed value, even null, wins;
        booleans, strings, nulls and missing keys are not numbers): typed rows give the key's
        column at once, JSON rows are decoded (``distribution.numbers_in``)."""
        values: list[float] = []
        for batch in self.scan(query):
            if batch.columns is None:
                values += dist.numbers_in(batch.metrics, key)
                continue
            values += numbers_in_column(batch.columns.columns().get(key))
        return values

    # -- delayed values by arrival (``labels``) --------------------------------------------------
    def label_times(self, deployment_crn: str, key: str, uuids: Sequence[str]) -> dict[str, int]:
        with self._reading() as cur:
            return labels.label_times(cur, self._exec, deployment_crn, key, uuids)

    def label_arrivals(
        self, deployment_crn: str, key: str, after_ms: int, through_ms: int
    ) -> set[int]:
        with self._reading() as cur:
            return labels.label_arrivals(cur, self._exec, deployment_crn, key, after_ms, through_ms)

    def delayed_keys(
        self, deployment_crn: str, keys: Sequence[str], *, latest: int | None = None
    ) -> set[str]:
        with self._reading() as cur:
            return labels.delayed_keys(cur, self._exec, deployment_crn, keys, latest)

    # -- maintenance ----------------------------------------------------------------------------
    def rollup(self, policy: RollupPolicy | None = None, now_ms: int | None = None) -> RollupReport:
        return sqlrollup.rollup(self._rollup_db, policy, now_ms)

    def _delete_folded(self, cur: Cursor, dep_id: int, keys: list[tuple[int, str]]) -> None:
        """Delete raw rows just folded: ``keys`` are the first (start_ms, uuid) keys of the
        deployment in order, so one key-range delete removes exactly them while no other
        writer can insert in between (SQLite's write lock; PostgreSQL overrides this)."""
        last_start, last_uuid = keys[-1]
        self._exec(
            cur,
            "DELETE FROM predictions WHERE deployment_id = ? AND (start_ms, uuid) <= (?, ?)",
            (dep_id, last_start, last_uuid),
        )

    def info(self) -> StoreInfo:
        with self._reading() as cur:
            version, _ = self._schema_version(cur)

            def count(table: str) -> int:
                return int(self._exec(cur, f"SELECT COUNT(*) FROM {table}").fetchone()[0])

            predictions, delayed, aggregates = (
                count("predictions"),
                count("delayed_metrics"),
                count("aggregates"),
            )
            tiers = {
                int(tier): int(n)
                for tier, n in self._exec(
                    cur, "SELECT tier_ms, COUNT(*) FROM rollup_buckets GROUP BY tier_ms"
                ).fetchall()
            }
        return StoreInfo(
            backend=self.backend,
            location=self.location,
            schema_version=version,
            predictions=predictions,
            delayed=delayed,
            aggregates=aggregates,
            rollup_buckets=tiers,
            size_bytes=self._size_bytes(),
        )


class StoreRollupDatabase:
    """``sqlrollup.RollupDatabase`` over one ``SQLStore``: the only door the rollup code has into
    the store (its connection, bucket lock and raw-row delete; nothing of its reads or caches)."""

    def __init__(self, store: SQLStore) -> None:
        self._store = store
        self.for_update = store._for_update

    def write(self, fn: Callable[[Cursor], T]) -> T:
        return self._store._write(fn)

    def execute(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._store._exec(cur, sql, params)

    def lock_buckets(self, cur: Cursor) -> None:
        self._store._lock_buckets(cur)

    def delete_folded(self, cur: Cursor, dep_id: int, keys: list[tuple[int, str]]) -> None:
        self._store._delete_folded(cur, dep_id, keys)

    def raw_metrics(
        self, cur: Cursor, metrics: str, delayed: str | None, layout_id: int | None, numbers: Any
    ) -> dict[str, Any]:
        return self._store._layouts.row_metrics(cur, metrics, delayed, layout_id, numbers)

    def deployments(self) -> list[tuple[int, str]]:
        ids = self._store._ids
        with self._store._reading() as cur:
            ids.load(cur)
        return [(dep_id, ids.by_id[dep_id].deployment_crn) for dep_id in sorted(ids.by_id)]
