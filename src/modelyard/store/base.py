"""The metrics store interface: what every backend (memory, SQLite, PostgreSQL) provides.

Three kinds of record live in a store:

- prediction records: one per prediction, written in batches through the process's writer;
- delayed metrics: values learned later (ground truth), attached by prediction uuid alone and
  merged into that prediction's metrics on read (a later value for the same key wins); each delayed
  value keeps when and from where it arrived;
- aggregate records: metrics of a window (start, end) of one deployment; never removed by retention.

Old raw prediction records are folded into rollup buckets (see ``modelyard.store.rollup``); reads
over rolled-up time return those buckets as records of kind ``rollup``.

Durability: ``write_predictions``, ``add_delayed`` and ``add_aggregate`` return only once their
transaction has committed. Buffering lives one level up, in ``modelyard.store.writer``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "DEFAULT_TIERS",
    "DelayedBatch",
    "DelayedValue",
    "Distribution",
    "Identity",
    "MetricColumns",
    "MetricsStore",
    "Prediction",
    "Query",
    "Record",
    "RecordKind",
    "RollupPolicy",
    "RollupReport",
    "RowBatch",
    "StoreInfo",
    "Tier",
]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


class RecordKind(StrEnum):
    PREDICTION = "prediction"
    AGGREGATE = "aggregate"
    ROLLUP = "rollup"


@dataclass(frozen=True, slots=True)
class Identity:
    """The three identifier levels every record carries."""

    model_crn: str
    build_crn: str
    deployment_crn: str


@dataclass(slots=True)
class Prediction:
    """A prediction record as the writer receives it. ``metrics`` is a JSON-ready dict."""

    uuid: str
    identity: Identity
    start_ms: int
    end_ms: int
    metrics: dict[str, Any]


@dataclass(slots=True)
class DelayedValue:
    """One delayed metric as kept for provenance: which key, its value, when and from where."""

    key: str
    value: Any
    tracked_ms: int
    source: str


@dataclass(slots=True)
class Record:
    """A record as reads return it.

    For ``prediction`` records ``metrics`` already has delayed values merged in. For ``rollup``
    records ``uuid`` is None, ``start_ms``/``end_ms`` are the bucket's bounds, ``tier_ms`` its
    width, and ``metrics`` maps each key to its summary dict (``count``, ``sum``, ``min``, ``max``,
    ``mean``, ``std``, quantiles ``p01``..``p99`` with ``rank_error``, or ``categories`` for string
    and boolean keys). For ``aggregate`` records ``uuid`` is None.
    """

    kind: RecordKind
    identity: Identity
    start_ms: int
    end_ms: int
    uuid: str | None
    metrics: dict[str, Any]
    tier_ms: int | None = None

    def to_reference(self) -> dict[str, Any]:
        """The record in the reference platform's exact shape (note ``TimeStamp``).

        Prediction and aggregate records have exactly the reference's keys, so scripts written
        for it see nothing new. Rollup records (which the reference never returns) carry two more,
        ``"kind": "rollup"`` and ``"tierMs"`` (the bucket's width), so a bucket of summaries is
        never mistaken for one prediction.
        """
        reference: dict[str, Any] = {
            "modelDeploymentCrn": self.identity.deployment_crn,
            "modelBuildCrn": self.identity.build_crn,
            "modelCrn": self.identity.model_crn,
            "startTimeStampMs": self.start_ms,
            "endTimeStampMs": self.end_ms,
            "predictionUuid": self.uuid,
            "metrics": self.metrics,
        }
        if self.kind == RecordKind.ROLLUP:
            reference["kind"] = RecordKind.ROLLUP.value
            reference["tierMs"] = self.tier_ms
        return reference


class MetricColumns(Protocol):
    """A batch's metrics kept column-wise by the store (``RowBatch.columns``)."""

    def columns(self) -> dict[str, Any]:
        """Top-level key -> a NumPy array (every row holds a number of one kind under it) or a
        list (None where a row lacks the key), keys in order of first appearance."""

    def texts(self) -> list[str]:
        """Each row's metrics as JSON text."""


class RowBatch:
    """A column-wise batch of records for fast bulk reads (``read_metrics_frame``).

    ``metrics`` holds each record's metrics as JSON text (delayed values already merged), so
    callers can decode in bulk. All lists have the same length. A store that keeps numbers typed
    hands them over as ``columns`` instead (``MetricColumns``), and ``metrics`` is then made from
    them on first use: a reader that can take columns (the frame builder) asks for those first.
    """

    __slots__ = (
        "_metrics",
        "build_crn",
        "columns",
        "deployment_crn",
        "end_ms",
        "kind",
        "model_crn",
        "start_ms",
        "tier_ms",
        "uuid",
    )

    def __init__(  # noqa: PLR0913  # shape: one keyword per column, as the dataclass it was
        self,
        kind: list[str] | None = None,
        uuid: list[str | None] | None = None,
        model_crn: list[str] | None = None,
        build_crn: list[str] | None = None,
        deployment_crn: list[str] | None = None,
        start_ms: list[int] | None = None,
        end_ms: list[int] | None = None,
        metrics: list[str] | None = None,
        tier_ms: list[int | None] | None = None,
        columns: MetricColumns | None = None,
    ) -> None:
        self.kind: list[str] = [] if kind is None else kind
        self.uuid: list[str | None] = [] if uuid is None else uuid
        self.model_crn: list[str] = [] if model_crn is None else model_crn
        self.build_crn: list[str] = [] if build_crn is None else build_crn
        self.deployment_crn: list[str] = [] if deployment_crn is None else deployment_crn
        self.start_ms: list[int] = [] if start_ms is None else start_ms
        self.end_ms: list[int] = [] if end_ms is None else end_ms
        self.tier_ms: list[int | None] = [] if tier_ms is None else tier_ms
        self.columns = columns
        self._metrics = metrics if metrics is not None or columns is not None else []

    @property
    def metrics(self) -> list[str]:
        if self._metrics is None:
            assert self.columns is not None
            self._metrics = self.columns.texts()
        return self._metrics

    def __len__(self) -> int:
        return len(self.kind)

    def __repr__(self) -> str:
        return f"RowBatch({len(self)} rows, kinds {sorted(set(self.kind))})"


@dataclass(frozen=True, slots=True)
class Query:
    """Which records to read. At least one identifier level must be given.

    A record is in the window when ``start_ms <= record.start_ms <= end_ms``. ``end_ms`` None
    means now. Records come back ordered by (start_ms, uuid) so pages are stable; ``after`` is the
    continuation token a previous page returned.
    """

    model_crn: str | None = None
    build_crn: str | None = None
    deployment_crn: str | None = None
    start_ms: int = 0
    end_ms: int | None = None
    kinds: frozenset[RecordKind] = frozenset(RecordKind)
    limit: int | None = None
    after: str | None = None
    # Rollup buckets of this width only (None: every tier). A chart over a long range reads one
    # tier per time span instead of decoding every bucket of every tier in it.
    tier_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Tier:
    """Buckets of ``width_ms``; buckets older than ``horizon_ms`` fold into the next tier
    (``None``: kept forever)."""

    width_ms: int
    horizon_ms: int | None


# Each tier's horizon must exceed the raw horizon (30 days by default): a prediction reaches the
# tiers only once it is that old, and one older than a tier's horizon skips that tier. So by default
# minute buckets cover days 30-35 (7,200 a deployment: enough to look closely at the days just
# past the raw horizon, few enough for charts to read), hour buckets up to about 13 months (a year
# back, compared hour by hour), and day buckets everything older, forever.
DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier(MINUTE_MS, 35 * DAY_MS),
    Tier(HOUR_MS, 395 * DAY_MS),
    Tier(DAY_MS, None),
)


@dataclass(frozen=True, slots=True)
class RollupPolicy:
    raw_horizon_ms: int = 30 * DAY_MS
    tiers: tuple[Tier, ...] = DEFAULT_TIERS


@dataclass(slots=True)
class RollupReport:
    raw_rolled: int = 0
    buckets_written: int = 0
    buckets_merged: int = 0
    tech_rolled: int = 0  # technical aggregates (source "tech") merged into hourly/daily ones


@dataclass(slots=True)
class Distribution:
    """Quantiles and a histogram of one metric key over a window.

    ``exact`` is True when computed from raw records only; otherwise quantiles come from merged
    sketches and ``rank_error`` is the sketch's normalised rank error bound (e.g. 0.0133 means a
    reported p50 is the true value at some rank in [0.4867, 0.5133]).
    """

    key: str
    count: int
    exact: bool
    rank_error: float
    quantiles: dict[float, float]
    bin_edges: list[float]
    bin_counts: list[int]
    min: float | None
    max: float | None
    mean: float | None


@dataclass(frozen=True, slots=True)
class DelayedBatch:
    """What ``MetricsStore.add_delayed_many`` did with a batch of (uuid, metrics) items.

    ``stored``: items whose values were stored; ``unknown``: the uuids no stored prediction has
    (raw or rolled up, or rolled up into a bucket retention has removed), each once, in batch
    order: reported, not an error; ``unchanged``: with ``skip_unchanged``, items whose every value
    the prediction already held (nothing written for them, no history row)."""

    stored: int
    unknown: tuple[str, ...] = ()
    unchanged: int = 0


@dataclass(slots=True)
class StoreInfo:
    backend: str
    location: str
    schema_version: int
    predictions: int
    delayed: int
    aggregates: int
    rollup_buckets: dict[int, int]
    size_bytes: int | None


class MetricsStore(abc.ABC):
    """Backends: ``MemoryStore`` (dev), ``SQLiteStore`` (default), ``PostgresStore``."""

    backend: str

    # -- identities -----------------------------------------------------------------------------
    @abc.abstractmethod
    def register_identity(self, identity: Identity) -> None:
        """Make a (model, build, deployment) triple known. Idempotent; writes register too."""

    @abc.abstractmethod
    def resolve(self, deployment_crn: str) -> Identity:
        """The identity of a deployment; NotFound naming the CRN if unknown."""

    # -- writes (durable when they return) ------------------------------------------------------
    @abc.abstractmethod
    def write_predictions(self, predictions: Sequence[Prediction]) -> None:
        """Insert a batch in one transaction; identities are registered on the way."""

    @abc.abstractmethod
    def add_delayed(
        self, uuid: str, metrics: dict[str, Any], source: str, tracked_ms: int | None = None
    ) -> None:
        """Attach metrics to a prediction by uuid. NotFound naming the uuid if unknown.

        A uuid whose raw record was already rolled up still resolves (the store keeps a uuid
        index): its numeric and categorical values are added to that bucket's summaries.
        """

    @abc.abstractmethod
    def add_delayed_many(
        self,
        items: Sequence[tuple[str, dict[str, Any]]],
        source: str,
        tracked_ms: int | None = None,
        *,
        skip_unchanged: bool = False,
    ) -> DelayedBatch:
        """``add_delayed`` for many (uuid, metrics) items in one transaction, in bulk (hundreds of
        thousands of uuids per call): the same merge (a later value for the same key wins, items
        of one uuid applied in order), the same ``delayed_metrics`` history rows, rolled-up uuids
        added to their buckets. Every item is checked before anything is written (InvalidInput
        naming the item). Unknown uuids are reported in ``DelayedBatch.unknown``, not raised.

        With ``skip_unchanged``, a uuid whose values are all already its stored values is left
        alone (counted in ``unchanged``): re-reading the same rows of a source is harmless.
        """

    @abc.abstractmethod
    def prediction_deployments(self, uuids: Sequence[str]) -> dict[str, str]:
        """uuid -> deployment CRN for those of ``uuids`` the store knows (raw or rolled up), in
        bulk: what a scope check of a batch of delayed metrics needs."""

    @abc.abstractmethod
    def delayed_history(self, uuid: str) -> list[DelayedValue]:
        """Every delayed value of a prediction in arrival order (empty list if none)."""

    @abc.abstractmethod
    def prediction_identity(self, uuid: str) -> Identity:
        """The (model, build, deployment) a prediction belongs to, raw or rolled up (through the
        uuid index): what a scope check needs. NotFound naming the uuid if it is unknown."""

    @abc.abstractmethod
    def find_prediction(self, uuid: str) -> Record:
        """The raw prediction record of ``uuid``, delayed values merged (found through the uuid
        index, not a scan). NotFound naming the uuid if it is unknown or already rolled up."""

    @abc.abstractmethod
    def add_aggregate(
        self, deployment_crn: str, start_ms: int, end_ms: int, metrics: dict[str, Any]
    ) -> None:
        """Record metrics of a window. The deployment must be known: an unknown CRN is
        InvalidInput naming it (as for reads; NotFound is kept for unknown prediction uuids)."""

    @abc.abstractmethod
    def replace_aggregate(
        self,
        deployment_crn: str,
        start_ms: int,
        end_ms: int,
        metrics: dict[str, Any],
        source: str,
    ) -> None:
        """Record metrics of a window as the one result of ``source`` for exactly that window.

        Any earlier aggregate of the same (deployment, start_ms, end_ms, source) is removed in the
        same transaction, so a monitor that recomputes a window leaves one record, not two.
        Aggregates written by ``add_aggregate`` (no source) or by another source are untouched.
        An unknown deployment is InvalidInput naming its CRN, as in ``add_aggregate``.
        """

    # -- reads ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def read(self, query: Query) -> tuple[list[Record], str | None]:
        """One page of records and the continuation token (None when nothing remains)."""

    @abc.abstractmethod
    def recent(self, query: Query, limit: int) -> list[Record]:
        """The newest ``limit`` records of ``query``, newest first (``query.limit`` and
        ``query.after`` are not used): an index range read backwards, so a busy deployment's last
        few predictions cost as little as a quiet one's."""

    @abc.abstractmethod
    def scan(self, query: Query, batch_size: int = 100_000) -> Iterator[RowBatch]:
        """All matching records as column-wise batches, in bounded memory."""

    @abc.abstractmethod
    def distribution(
        self,
        query: Query,
        key: str,
        quantiles: Sequence[float] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99),
        bins: int = 20,
    ) -> Distribution:
        """Quantiles and histogram of ``key``: exact from raw rows, approximate from rollups."""

    # -- delayed values by arrival (what monitors ask about labels) ------------------------------
    @abc.abstractmethod
    def label_times(self, deployment_crn: str, key: str, uuids: Sequence[str]) -> dict[str, int]:
        """When each prediction's first delayed value of ``key`` was tracked (epoch ms), for
        those of ``uuids`` that belong to the deployment and have one (the others left out)."""

    @abc.abstractmethod
    def label_arrivals(
        self, deployment_crn: str, key: str, after_ms: int, through_ms: int
    ) -> set[int]:
        """Start times of the deployment's predictions (raw or rolled up) that were given a
        delayed value of ``key`` tracked in (``after_ms``, ``through_ms``]."""

    @abc.abstractmethod
    def delayed_keys(
        self, deployment_crn: str, keys: Sequence[str], *, latest: int | None = None
    ) -> set[str]:
        """Those of ``keys`` the deployment has delayed values of: among the store's newest
        ``latest`` delayed values (bounded), or among all of them when ``latest`` is None."""

    # -- maintenance ----------------------------------------------------------------------------
    @abc.abstractmethod
    def rollup(self, policy: RollupPolicy | None = None, now_ms: int | None = None) -> RollupReport:
        """Fold raw records older than the horizon into buckets, then coarsen older buckets.

        Idempotent and safe to interrupt: each step commits buckets and deletes what they replace
        in one transaction. Aggregate records are never touched, except the gateway's technical
        ones (source ``tech``): older than a day merged hourly, older than 30 days daily.
        """

    @abc.abstractmethod
    def info(self) -> StoreInfo: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> MetricsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
