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
(what reads return) and once per value in ``delayed_metrics`` (provenance). Rollup buckets and
distributions live in ``sqlrollup``.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from operator import itemgetter
from typing import Any, ClassVar, TypeVar

import orjson

from modelyard import settings
from modelyard.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from modelyard.store import sqlrollup
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
from modelyard.store.query import KIND_RANK, SortKey, Window, check_window, encode_token
from modelyard.store.schema import CREATE_MIGRATIONS_TABLE, check_version, migrations
from modelyard.store.summary import BucketSummary

__all__ = ["SQLStore"]

T = TypeVar("T")
# sqlite3.Cursor or psycopg.Cursor: both offer execute/executemany/fetchone/fetchall.
Cursor = Any

_IN_CHUNK = 500  # values per IN (...) list
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _merge_text(metrics: str, delayed: str) -> str:
    """A prediction's metrics with its delayed values on top (a JSON null is kept as null)."""
    merged = orjson.loads(metrics)
    merged.update(orjson.loads(delayed))
    return orjson.dumps(merged).decode()


def _merged(metrics: str, delayed: str | None) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(metrics)
    if delayed is not None:
        out.update(orjson.loads(delayed))
    return out


class _Duplicate(Exception):
    """Raised inside a write transaction so it rolls back before the culprits are looked up."""


class SQLStore(MetricsStore):
    dialect: ClassVar[str]
    _placeholder: ClassVar[str] = "?"
    _for_update: ClassVar[str] = ""
    location: str

    def __init__(self) -> None:
        # deployment CRN -> (id, identity) and id -> identity. Identities are never deleted or
        # changed once stored, so this cache cannot go stale; a miss just reloads.
        self._by_crn: dict[str, tuple[int, Identity]] = {}
        self._by_id: dict[int, Identity] = {}
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

    def _numeric_values(
        self, cur: Cursor, dep_id: int, start_ms: int, end_ms: int, key: str
    ) -> list[float] | None:
        """Numbers under top-level ``key`` of one deployment's raw rows in the window, a delayed
        value (even null) winning, extracted by the database; None if it cannot for this key."""
        return None

    def _prefer_index_order(self, cur: Cursor) -> None:
        """Make the next page query walk its index in order rather than sort (see PostgreSQL)."""

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
        cur.execute(CREATE_MIGRATIONS_TABLE)
        version, release = self._schema_version(cur)
        check_version(version, release, self.location)
        for migration in migrations(self.dialect):
            if migration.version <= version:
                continue
            for statement in migration.statements:
                cur.execute(statement)
            import modelyard

            self._exec(
                cur,
                "INSERT INTO schema_migrations (version, name, modelyard_version, applied_ms) "
                "VALUES (?, ?, ?, ?)",
                (migration.version, migration.name, modelyard.__version__, _now_ms()),
            )
            version = migration.version
        return version

    def _schema_version(self, cur: Cursor) -> tuple[int, str | None]:
        row = self._exec(
            cur,
            "SELECT version, modelyard_version FROM schema_migrations "
            "ORDER BY version DESC LIMIT 1",
        ).fetchone()
        return (0, None) if row is None else (int(row[0]), str(row[1]))

    # -- identities -----------------------------------------------------------------------------
    def _load_identities(self, cur: Cursor) -> None:
        rows = self._exec(
            cur, "SELECT id, deployment_crn, build_crn, model_crn FROM identities"
        ).fetchall()
        for dep_id, deployment, build, model in rows:
            identity = Identity(model_crn=model, build_crn=build, deployment_crn=deployment)
            self._by_crn[deployment] = (int(dep_id), identity)
            self._by_id[int(dep_id)] = identity

    def _ensure_identity(self, cur: Cursor, identity: Identity) -> tuple[int, bool]:
        """The id of ``identity`` (registering it), and whether the cache must learn it."""
        if not isinstance(identity, Identity):
            raise InvalidInput(
                f"identity {identity!r} must be an Identity(model_crn, build_crn, deployment_crn)"
            )
        for name in ("model_crn", "build_crn", "deployment_crn"):
            value = getattr(identity, name)
            if not isinstance(value, str) or not value or "\x00" in value:
                raise InvalidInput(f"identity {name}={value!r} must be a non-empty CRN string")
        cached = self._by_crn.get(identity.deployment_crn)
        if cached is None:
            self._exec(
                cur,
                "INSERT INTO identities (deployment_crn, build_crn, model_crn) VALUES (?, ?, ?) "
                "ON CONFLICT (deployment_crn) DO NOTHING",
                (identity.deployment_crn, identity.build_crn, identity.model_crn),
            )
            row = self._exec(
                cur,
                "SELECT id, build_crn, model_crn FROM identities WHERE deployment_crn = ?",
                (identity.deployment_crn,),
            ).fetchone()
            stored = Identity(
                model_crn=row[2], build_crn=row[1], deployment_crn=identity.deployment_crn
            )
            cached = (int(row[0]), stored)
            fresh = True
        else:
            fresh = False
        if cached[1] != identity:
            raise Conflict(
                f"deployment {identity.deployment_crn!r} is registered with build "
                f"{cached[1].build_crn!r} and model {cached[1].model_crn!r}, not build "
                f"{identity.build_crn!r} and model {identity.model_crn!r}; a deployment belongs "
                "to exactly one build and model",
                deployment_crn=identity.deployment_crn,
            )
        return cached[0], fresh

    def _learn(self, identities: Sequence[tuple[int, Identity]]) -> None:
        """Cache identities once the transaction that registered them has committed."""
        for dep_id, identity in identities:
            self._by_crn[identity.deployment_crn] = (dep_id, identity)
            self._by_id[dep_id] = identity

    def register_identity(self, identity: Identity) -> None:
        dep_id, _ = self._write(lambda cur: self._ensure_identity(cur, identity))
        self._learn([(dep_id, identity)])

    def resolve(self, deployment_crn: str) -> Identity:
        cached = self._by_crn.get(deployment_crn)
        if cached is None:
            with self._reading() as cur:
                self._load_identities(cur)
            cached = self._by_crn.get(deployment_crn)
        if cached is None:
            raise NotFound(
                f"deployment {deployment_crn!r} is not known to this store; register it or "
                "write a prediction for it first",
                deployment_crn=deployment_crn,
            )
        return cached[1]

    def _identity(self, cur: Cursor, dep_id: int) -> Identity:
        identity = self._by_id.get(dep_id)
        if identity is None:
            self._load_identities(cur)
            identity = self._by_id[dep_id]
        return identity

    def _deployment_ids(self, cur: Cursor, query: Query) -> list[int]:
        """Ids of the deployments a query selects; InvalidInput naming unknown identifiers."""
        wanted = (
            ("model_crn", query.model_crn),
            ("build_crn", query.build_crn),
            ("deployment_crn", query.deployment_crn),
        )

        def unknown() -> list[str]:
            identities = list(self._by_id.values())  # a snapshot: other threads may add
            known = {name: {getattr(i, name) for i in identities} for name, _ in wanted}
            return [
                f"{name}={value!r}" for name, value in wanted if value and value not in known[name]
            ]

        if unknown():
            self._load_identities(cur)
            missing = unknown()
            if missing:
                raise InvalidInput(
                    f"unknown identifiers: {', '.join(missing)}; pass identifiers of "
                    "deployments that have recorded metrics",
                    unknown=missing,
                )
        return sorted(
            dep_id
            for dep_id, identity in list(self._by_id.items())
            if all(value is None or getattr(identity, name) == value for name, value in wanted)
        )

    # -- writes ---------------------------------------------------------------------------------
    def _encode(
        self, predictions: Sequence[Prediction]
    ) -> tuple[list[tuple[Any, ...]], dict[str, Identity]]:
        """Validate and encode a batch; rows of not-yet-cached deployments carry the CRN."""
        rows: list[tuple[Any, ...]] = []
        unknown: dict[str, Identity] = {}
        by_crn = self._by_crn
        limit = self._max_record_bytes
        dumps = orjson.dumps
        append = rows.append
        for p in predictions:
            if not isinstance(p, Prediction):
                raise InvalidInput(
                    f"{p!r} is not a Prediction; write_predictions takes Predictions"
                )
            uuid, start, end, metrics, identity = (
                p.uuid,
                p.start_ms,
                p.end_ms,
                p.metrics,
                p.identity,
            )
            if type(uuid) is not str or not uuid or "\x00" in uuid:
                raise InvalidInput(
                    f"prediction uuid {uuid!r} must be a non-empty string without NUL characters"
                )
            if type(start) is not int or type(end) is not int:
                raise InvalidInput(
                    f"prediction {uuid}: start_ms={start!r} and end_ms={end!r} must be integer "
                    "epoch milliseconds"
                )
            if end < start:
                raise InvalidInput(
                    f"prediction {uuid}: end_ms={end} is before start_ms={start}; "
                    "pass end_ms >= start_ms"
                )
            if type(metrics) is not dict:
                raise InvalidInput(
                    f"prediction {uuid}: metrics must be a dict, got {type(metrics).__name__}"
                )
            try:
                text = dumps(metrics, option=_JSON_OPTS)
            except TypeError as exc:
                raise InvalidInput(
                    f"prediction {uuid}: metrics are not JSON-serialisable ({exc}); use numbers, "
                    "strings, booleans, None, lists and dicts with string keys"
                ) from exc
            if len(text) > limit:
                raise PayloadTooLarge(
                    f"prediction {uuid}: metrics are {len(text)} bytes, more than "
                    f"MODELYARD_MAX_RECORD_BYTES={limit}; send fewer or smaller values",
                    uuid=uuid,
                )
            cached = by_crn.get(identity.deployment_crn) if isinstance(identity, Identity) else None
            if cached is not None and (cached[1] is identity or cached[1] == identity):
                append((cached[0], start, uuid, end, text.decode()))
            else:
                if not isinstance(identity, Identity):
                    raise InvalidInput(
                        f"prediction {uuid}: identity {identity!r} must be an Identity"
                    )
                unknown[identity.deployment_crn] = identity
                append((identity.deployment_crn, start, uuid, end, text.decode()))
        return rows, unknown

    def write_predictions(self, predictions: Sequence[Prediction]) -> None:
        if not predictions:
            return
        rows, unknown = self._encode(predictions)
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
                    dep_id, fresh = self._ensure_identity(cur, identity)
                    ids[crn] = dep_id
                    if fresh:
                        learned.append((dep_id, identity))
                batch = [(ids[r[0]], *r[1:]) if isinstance(r[0], str) else r for r in rows]
            try:
                self._insert_rows(cur, batch)
            except Exception as exc:
                if self._is_unique_violation(exc):
                    raise _Duplicate from exc
                raise
            return learned

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
        self._learn(learned)

    def _existing(self, cur: Cursor, uuids: Sequence[str]) -> list[str]:
        """Which of ``uuids`` are already stored (raw or rolled up)."""
        found: list[str] = []
        for i in range(0, len(uuids), _IN_CHUNK):
            chunk = uuids[i : i + _IN_CHUNK]
            marks = _marks(len(chunk))
            sql = f"SELECT uuid FROM prediction_uuids WHERE uuid IN ({marks})"
            found += [row[0] for row in self._exec(cur, sql, chunk).fetchall()]
        return found

    def add_delayed(
        self, uuid: str, metrics: dict[str, Any], source: str, tracked_ms: int | None = None
    ) -> None:
        if not isinstance(uuid, str) or not uuid:
            raise InvalidInput(f"uuid={uuid!r} must be the prediction's uuid string")
        if not isinstance(metrics, dict) or not metrics:
            raise InvalidInput(
                f"delayed metrics for {uuid} must be a non-empty dict of key -> value, "
                f"got {metrics!r}"
            )
        bad_keys = [k for k in metrics if not isinstance(k, str) or not k or "\x00" in k]
        if bad_keys:
            raise InvalidInput(f"delayed metric keys {bad_keys!r} must be non-empty strings")
        if not isinstance(source, str) or "\x00" in source:
            raise InvalidInput(f"source={source!r} must be a string naming where values came from")
        when = _now_ms() if tracked_ms is None else tracked_ms
        if not _is_int(when):
            raise InvalidInput(f"tracked_ms={tracked_ms!r} must be integer epoch milliseconds")
        try:
            values = [(k, orjson.dumps(v, option=_JSON_OPTS).decode()) for k, v in metrics.items()]
        except TypeError as exc:
            raise InvalidInput(
                f"delayed metrics for {uuid} are not JSON-serialisable ({exc})"
            ) from exc
        # Round-trip so what is merged is exactly what provenance keeps (numpy -> plain JSON).
        plain = {k: orjson.loads(text) for k, text in values}

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
                sqlrollup.add_to_bucket(self, cur, where[0], where[1], uuid, plain)
            cur.executemany(
                self._q(
                    "INSERT INTO delayed_metrics (uuid, key, value, tracked_ms, source) "
                    "VALUES (?, ?, ?, ?, ?)"
                ),
                [(uuid, k, text, when, source) for k, text in values],
            )

        self._write(transaction)

    def prediction_identity(self, uuid: str) -> Identity:
        if not isinstance(uuid, str) or not uuid or "\x00" in uuid:
            raise InvalidInput(f"uuid={uuid!r} must be a prediction's uuid string")
        with self._reading() as cur:
            row = self._exec(
                cur, "SELECT deployment_id FROM prediction_uuids WHERE uuid = ?", (uuid,)
            ).fetchone()
            identity = None if row is None else self._identity(cur, int(row[0]))
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
            identity = None if row is None else self._identity(cur, row[0])
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
        text = self._aggregate_text(start_ms, end_ms, metrics)
        dep_id = self._aggregate_target(deployment_crn)
        self._write(
            lambda cur: self._exec(
                cur,
                "INSERT INTO aggregates (deployment_id, start_ms, end_ms, metrics, created_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (dep_id, start_ms, end_ms, text, _now_ms()),
            )
        )

    @staticmethod
    def _aggregate_text(start_ms: int, end_ms: int, metrics: dict[str, Any]) -> str:
        """The metrics as JSON text after checking the window; InvalidInput names what is wrong."""
        if not _is_int(start_ms) or not _is_int(end_ms):
            raise InvalidInput(
                f"aggregate window start_ms={start_ms!r}, end_ms={end_ms!r} must be integer "
                "epoch milliseconds"
            )
        if start_ms > end_ms:
            raise InvalidInput(
                f"aggregate window start_ms={start_ms} is after end_ms={end_ms}; "
                "pass start_ms <= end_ms"
            )
        if not isinstance(metrics, dict):
            raise InvalidInput(f"aggregate metrics must be a dict, got {type(metrics).__name__}")
        try:
            text = orjson.dumps(metrics, option=_JSON_OPTS).decode()
        except TypeError as exc:
            raise InvalidInput(f"aggregate metrics are not JSON-serialisable ({exc})") from exc
        return text

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
        text = self._aggregate_text(start_ms, end_ms, metrics)
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
                (dep_id, start_ms, end_ms, text, _now_ms(), source),
            )

        self._write(transaction)

    def _aggregate_target(self, deployment_crn: str) -> int:
        """The deployment's integer id; InvalidInput naming the CRN if the store does not know it
        (an unknown identifier is bad input, as in reads; NotFound is for unknown uuids)."""
        dep_id = self._by_crn.get(deployment_crn, (None,))[0]
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
            dep_id = self._by_crn[deployment_crn][0]
        return int(dep_id)

    # -- reads ----------------------------------------------------------------------------------
    def _kind_rows(
        self,
        cur: Cursor,
        kind: RecordKind,
        dep_ids: list[int],
        window: Window,
        after: SortKey | None,
        limit: int | None,
        with_deployment: bool = True,
        newest_first: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Rows of one kind in sort order after ``after``.

        Rows are (deployment_id, start, tie, end or tier, metrics[, delayed]); ``with_deployment``
        False drops the leading deployment_id, which a one-deployment ``scan`` already knows (one
        Python int fewer per row: about a seventh of the driver's fetch time on 1M rows).
        """
        rank = KIND_RANK[kind]
        if kind is RecordKind.PREDICTION:
            columns = "start_ms, uuid, end_ms, metrics, delayed FROM predictions"
            start_col, tie_col = "start_ms", "uuid"
        elif kind is RecordKind.AGGREGATE:
            columns = "start_ms, id, end_ms, metrics FROM aggregates"
            start_col, tie_col = "start_ms", "id"
        else:
            columns = "bucket_start_ms, id, tier_ms, summary FROM rollup_buckets"
            start_col, tie_col = "bucket_start_ms", "id"
        select = f"SELECT deployment_id, {columns}" if with_deployment else f"SELECT {columns}"
        # The token becomes the lower bound of the range itself, so each page starts with an
        # index seek right after the previous one (a separate filter would rescan from the
        # window's start on every page).
        lower, same_rank = window.start_ms, None
        if after is not None:
            a_start, a_rank, a_tie = after
            if rank == a_rank:
                lower, same_rank = max(lower, a_start), (a_start, a_tie)
            elif rank < a_rank:
                lower = max(lower, a_start + 1)
            else:
                lower = max(lower, a_start)
        sql = (
            f"{select} WHERE deployment_id IN ({_marks(len(dep_ids))}) "
            f"AND {start_col} >= ? AND {start_col} <= ?"
        )
        params: list[Any] = [*dep_ids, lower, window.end_ms]
        if same_rank is not None:
            sql += f" AND ({start_col}, {tie_col}) > (?, ?)"
            params += same_rank
        if kind is RecordKind.ROLLUP and window.tier_ms is not None:
            sql += " AND tier_ms = ?"
            params.append(window.tier_ms)
        order = " DESC" if newest_first else ""
        sql += f" ORDER BY {start_col}{order}, {tie_col}{order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        self._prefer_index_order(cur)
        rows: list[tuple[Any, ...]] = self._exec(cur, sql, params).fetchall()
        return rows

    def _record(self, cur: Cursor, kind: RecordKind, row: tuple[Any, ...]) -> Record:
        identity = self._identity(cur, row[0])
        if kind is RecordKind.PREDICTION:
            return Record(kind, identity, row[1], row[3], row[2], _merged(row[4], row[5]))
        if kind is RecordKind.AGGREGATE:
            return Record(kind, identity, row[1], row[3], None, orjson.loads(row[4]))
        summary = BucketSummary.from_bytes(row[4])
        return Record(kind, identity, row[1], row[1] + row[3], None, summary.to_dict(), row[3])

    def read(self, query: Query) -> tuple[list[Record], str | None]:
        window = check_window(query)
        with self._reading() as cur:
            dep_ids = self._deployment_ids(cur, query)
            if not dep_ids or not window.kinds:
                return [], None
            fetch = None if window.limit is None else window.limit + 1
            # One ordered index range per (kind, deployment), merged here: a single query over
            # several deployments would sort the whole rest of the window for every page.
            streams = []
            for kind in sorted(window.kinds, key=KIND_RANK.__getitem__):
                rank = KIND_RANK[kind]
                for dep_id in dep_ids:
                    rows = self._kind_rows(cur, kind, [dep_id], window, window.after, fetch)
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
        if not _is_int(limit) or limit < 1:
            raise InvalidInput(f"limit={limit!r} must be a positive integer")
        window = check_window(query)
        with self._reading() as cur:
            dep_ids = self._deployment_ids(cur, query)
            streams = []
            for kind in sorted(window.kinds, key=KIND_RANK.__getitem__):
                rank = KIND_RANK[kind]
                for dep_id in dep_ids:  # each its own backward index range, at most ``limit``
                    rows = self._kind_rows(
                        cur, kind, [dep_id], window, None, limit, newest_first=True
                    )
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
        if not _is_int(batch_size) or batch_size < 1:
            raise InvalidInput(f"batch_size={batch_size!r} must be a positive integer")
        window = check_window(query)
        with self._reading() as cur:
            dep_ids = self._deployment_ids(cur, query)
        for kind in sorted(window.kinds, key=KIND_RANK.__getitem__):
            rank = KIND_RANK[kind]
            for dep_id in dep_ids:
                after = window.after
                while True:
                    with self._reading() as cur:
                        rows = self._kind_rows(
                            cur, kind, [dep_id], window, after, batch_size, with_deployment=False
                        )
                        if not rows:
                            break
                        batch = self._batch(cur, kind, rows, self._identity(cur, dep_id))
                    yield batch
                    if len(rows) < batch_size:
                        break
                    last = rows[-1]
                    after = (last[0], rank, last[1])

    def _batch(
        self, cur: Cursor, kind: RecordKind, rows: list[tuple[Any, ...]], identity: Identity
    ) -> RowBatch:
        """Rows of one deployment (without deployment_id) as columns, transposed once."""
        n = len(rows)
        # One C-level pass per column: much cheaper than zip(*rows), which builds an iterator
        # per row (and wakes the garbage collector for each few hundred of them).
        starts, ties, third, metrics = (list(map(itemgetter(i), rows)) for i in range(4))
        models, builds, deployments = (
            [identity.model_crn] * n,
            [identity.build_crn] * n,
            [identity.deployment_crn] * n,
        )
        if kind is RecordKind.PREDICTION:
            # Most rows have no delayed values: one C-level test finds the few that do.
            if any(map(itemgetter(4), rows)):
                for i, row in enumerate(rows):
                    if row[4] is not None:
                        metrics[i] = _merge_text(metrics[i], row[4])
            return RowBatch(
                kind=[kind.value] * n,
                uuid=ties,
                model_crn=models,
                build_crn=builds,
                deployment_crn=deployments,
                start_ms=starts,
                end_ms=third,
                metrics=metrics,
                tier_ms=[None] * n,
            )
        if kind is RecordKind.AGGREGATE:
            return RowBatch(
                kind=[kind.value] * n,
                uuid=[None] * n,
                model_crn=models,
                build_crn=builds,
                deployment_crn=deployments,
                start_ms=starts,
                end_ms=third,
                metrics=metrics,
                tier_ms=[None] * n,
            )
        return RowBatch(
            kind=[kind.value] * n,
            uuid=[None] * n,
            model_crn=models,
            build_crn=builds,
            deployment_crn=deployments,
            start_ms=starts,
            end_ms=[s + w for s, w in zip(starts, third, strict=True)],
            metrics=[
                orjson.dumps(BucketSummary.from_bytes(blob).to_dict()).decode() for blob in metrics
            ],
            tier_ms=third,
        )

    def distribution(
        self,
        query: Query,
        key: str,
        quantiles: Sequence[float] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99),
        bins: int = 20,
    ) -> Distribution:
        return sqlrollup.distribution(self, query, key, quantiles, bins)

    # -- maintenance ----------------------------------------------------------------------------
    def rollup(self, policy: RollupPolicy | None = None, now_ms: int | None = None) -> RollupReport:
        return sqlrollup.rollup(self, policy, now_ms)

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
