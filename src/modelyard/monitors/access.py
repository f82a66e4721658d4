"""How a monitor reaches its data: the embedded store, or the server over HTTP.

A monitor needs more than the SDK's reads: when labels arrived (late-label detection and label
coverage), its own history (``monitor_results``, ``monitor_state``), the stored reference sample,
merged sketches of rolled-up windows, and its alerts. ``MonitorAccess`` is that narrow surface.

- ``EmbeddedAccess(store)`` runs it against a store in this process: predictions and labels
  through the store's query interface (``scan``, ``recent``, ``distribution``, ``label_times``,
  ``label_arrivals``, ``delayed_keys``), the monitor's own state through ``Registry.monitors``;
  no SQL here. Used when ``run_monitor`` is given a ``store``, or when the SDK's backend here is
  the embedded one (``MODELYARD_HOME`` or ``MODELYARD_DATABASE_URL`` set, no ``MODELYARD_URL``).
  The server's routes use it too.
- ``RemoteAccess`` (``modelyard.monitors.remote``) sends each call to the server's
  ``/api/v1/monitors/*`` routes with the SDK's key, and reads windows with the SDK's remote
  ``scan`` (``GET /api/v1/metrics``): used whenever the SDK's backend is remote, i.e. whenever
  ``MODELYARD_URL`` is set, as in a job run, which then acts with its run's scoped key only.

``modelyard.monitors.open_access`` picks one of the two for the SDK's backend here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from modelyard.connectors.base import Connection, Credentials
from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import ImportRecord, Registry, StoredResult
from modelyard.specs.monitor_outputs import closest
from modelyard.store.base import (
    DelayedBatch,
    Distribution,
    MetricsStore,
    Query,
    RecordKind,
    RowBatch,
)

__all__ = [
    "EmbeddedAccess",
    "MonitorAccess",
    "RecordedKeys",
    "StoredResult",  # kept by the registry (``Registry.monitors``)
]

KEY_SAMPLE = 1000  # latest prediction records whose keys a spec is checked against
LABEL_SAMPLE = 10_000  # latest delayed values (all deployments) looked through for labels


@dataclass(frozen=True)
class RecordedKeys:
    """The keys a deployment's latest records carry (metrics, merged labels, rolled-up columns),
    plus those of ``wanted`` found among its delayed values; ``records`` read (0: none yet).

    Bounded reads: the latest ``KEY_SAMPLE`` records, and the latest ``LABEL_SAMPLE`` delayed
    values of any deployment (index range on ``tracked_ms``). A wanted key found in neither is
    looked for among all the deployment's delayed values (a scan of ``delayed_metrics``) only
    when a found key has a close name, i.e. when leaving it out would make an error of it."""

    keys: frozenset[str]
    records: int


class MonitorAccess(abc.ABC):
    """What ``run_monitor`` needs besides the analysis (see the module docstring)."""

    @abc.abstractmethod
    def resolve(self, deployment: str | None, model: str | None) -> str:
        """The deployment CRN (checked to exist), or the active deployment of ``model``."""

    @abc.abstractmethod
    def scan(self, query: Query, batch_size: int) -> Iterator[RowBatch]:
        """Records of ``query`` in column-wise batches (the SDK backend's or the store's)."""

    @abc.abstractmethod
    def recorded_keys(self, deployment: str, wanted: Sequence[str]) -> RecordedKeys:
        """What the deployment has recorded, to check a spec's keys against (``RecordedKeys``)."""

    @abc.abstractmethod
    def label_times(self, deployment: str, key: str, uuids: Sequence[str]) -> dict[str, int]:
        """When each prediction's first value of ``key`` arrived (uuids of ``deployment`` only;
        those without a value left out)."""

    @abc.abstractmethod
    def late_label_windows(
        self, deployment: str, key: str, after_ms: int, through_ms: int, window_ms: int
    ) -> set[int]:
        """Starts of the windows holding predictions whose ``key`` arrived in (after, through]."""

    @abc.abstractmethod
    def state(self, monitor: str, deployment: str) -> tuple[set[int], int | None]:
        """(starts of the windows computed for ``deployment``, labels-through mark). A window
        stored partial (``window.partial``: computed before it ended) is not among them, so the
        next run after its end computes it again."""

    @abc.abstractmethod
    def result(self, monitor: str, deployment: str, start_ms: int) -> StoredResult | None:
        """The stored result of one window, if any."""

    @abc.abstractmethod
    def distribution(
        self, deployment: str, start_ms: int, end_ms: int, key: str, ranks: Sequence[float]
    ) -> Distribution:
        """Quantiles of ``key`` at ``ranks`` over [start, end): merged sketches once rolled up."""

    @abc.abstractmethod
    def reference(self, deployment: str, name: str) -> pd.DataFrame:
        """The stored reference sample ``name`` of ``deployment``."""

    @abc.abstractmethod
    def save(
        self,
        monitor: str,
        source: str,
        deployment: str,
        start_ms: int,
        end_ms: int,
        n: int,
        metrics: dict[str, Any],
    ) -> None:
        """Replace the window's aggregate record (``source``) and its ``monitor_results`` row."""

    @abc.abstractmethod
    def save_mark(self, monitor: str, deployment: str, through_ms: int) -> None:
        """Remember that labels up to ``through_ms`` have been looked at."""

    @abc.abstractmethod
    def evaluate_alerts(
        self, monitor: str, deployment: str, rules: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Reconcile the monitor's alerts with its results; the notifications due."""

    # -- label imports (``modelyard.monitors.labels``) -------------------------------------------
    @abc.abstractmethod
    def connection(self, deployment: str, name: str) -> tuple[Connection, str]:
        """(connection ``name`` of the deployment's project, that project's CRN)."""

    def credentials(self, connection: Connection) -> Credentials:
        """The connection's credentials: in a run, from the environment it was given."""
        return Credentials.from_env(connection)

    @abc.abstractmethod
    def label_watermark(self, monitor: str, deployment: str) -> Any | None:
        """The watermark of the monitor's ``labels:`` source (None: nothing read yet)."""

    @abc.abstractmethod
    def record_import(
        self, monitor: str, deployment: str, project_crn: str, record: ImportRecord, advance_to: Any
    ) -> ImportRecord:
        """Keep an import's record and, unless ``advance_to`` is ``registry.KEEP_WATERMARK``,
        advance the watermark to it (one transaction)."""

    @abc.abstractmethod
    def label_imports(self, monitor: str, deployment: str, limit: int) -> list[ImportRecord]:
        """The monitor's latest label imports, newest first."""

    @abc.abstractmethod
    def add_delayed_many(
        self, items: Sequence[tuple[str, dict[str, Any]]], source: str
    ) -> DelayedBatch:
        """Store delayed metrics in bulk, leaving unchanged ones alone (``skip_unchanged``)."""


class EmbeddedAccess(MonitorAccess):
    """``MonitorAccess`` over a store in this process: predictions and labels through the
    store's query interface, the monitor's own state through ``Registry.monitors``."""

    def __init__(self, store: MetricsStore) -> None:
        self.store = store
        self.registry = Registry(store)

    def resolve(self, deployment: str | None, model: str | None) -> str:
        if deployment is not None:
            self.store.resolve(deployment)  # NotFound naming the CRN if unknown
            return deployment
        if model is None:
            raise InvalidInput("give a deployment CRN or a model name to resolve")
        active = self.registry.active_deployment(model)
        if active is None:
            raise NotFound(
                f"model {model!r} has no active deployment; deploy it or give the monitor spec "
                "a 'deployment' CRN"
            )
        return active.crn

    def scan(self, query: Query, batch_size: int) -> Iterator[RowBatch]:
        return self.store.scan(query, batch_size)

    def recorded_keys(self, deployment: str, wanted: Sequence[str]) -> RecordedKeys:
        store = self.store
        store.resolve(deployment)
        query = Query(deployment_crn=deployment, kinds=frozenset({RecordKind.PREDICTION}))
        records = store.recent(query, KEY_SAMPLE)
        keys = {k for r in records for k in _flat_keys(r.metrics)}
        if not records:  # everything rolled up already: the buckets' summarised columns
            rolled = Query(deployment_crn=deployment, kinds=frozenset({RecordKind.ROLLUP}))
            records = store.recent(rolled, 20)
            keys = {str(k) for r in records for k in r.metrics if not str(k).startswith("_")}
        missing = [w for w in dict.fromkeys(wanted) if w not in keys]
        if missing and records:
            keys |= store.delayed_keys(deployment, missing, latest=LABEL_SAMPLE)
            missing = [w for w in missing if w not in keys and closest(w, keys)]
        if missing and records:
            # Labels arrive weeks after their predictions: look for a close-named key's values
            # among all of the deployment's delayed values before calling it unknown.
            keys |= store.delayed_keys(deployment, missing)
        return RecordedKeys(frozenset(keys), len(records))

    def label_times(self, deployment: str, key: str, uuids: Sequence[str]) -> dict[str, int]:
        return self.store.label_times(deployment, key, uuids)

    def late_label_windows(
        self, deployment: str, key: str, after_ms: int, through_ms: int, window_ms: int
    ) -> set[int]:
        starts = self.store.label_arrivals(deployment, key, after_ms, through_ms)
        return {start // window_ms * window_ms for start in starts}

    def state(self, monitor: str, deployment: str) -> tuple[set[int], int | None]:
        return self.registry.monitors.state(monitor, deployment)

    def result(self, monitor: str, deployment: str, start_ms: int) -> StoredResult | None:
        return self.registry.monitors.result(monitor, deployment, start_ms)

    def distribution(
        self, deployment: str, start_ms: int, end_ms: int, key: str, ranks: Sequence[float]
    ) -> Distribution:
        # The store's window is inclusive at both ends, a monitor's is end-exclusive.
        query = Query(
            deployment_crn=deployment,
            start_ms=start_ms,
            end_ms=end_ms - 1,
            kinds=frozenset({RecordKind.PREDICTION, RecordKind.ROLLUP}),
        )
        return self.store.distribution(query, key, quantiles=ranks, bins=1)

    def reference(self, deployment: str, name: str) -> pd.DataFrame:
        from modelyard.monitors.references import load_reference

        return load_reference(deployment, name, store=self.store)

    def save(
        self,
        monitor: str,
        source: str,
        deployment: str,
        start_ms: int,
        end_ms: int,
        n: int,
        metrics: dict[str, Any],
    ) -> None:
        # An empty window is a mark that it was looked at (monitor_results), not a result: no
        # aggregate record of n=0 for `metrics read` to show.
        if n > 0 or metrics.get("n"):
            self.store.replace_aggregate(deployment, start_ms, end_ms, metrics, source)
        self.registry.monitors.save_result(monitor, deployment, start_ms, end_ms, n, metrics)

    def save_mark(self, monitor: str, deployment: str, through_ms: int) -> None:
        self.registry.monitors.save_mark(monitor, deployment, through_ms)

    def evaluate_alerts(
        self, monitor: str, deployment: str, rules: Sequence[str]
    ) -> list[dict[str, Any]]:
        from modelyard.monitors.alerts import evaluate_monitor

        return evaluate_monitor(self.store, monitor, deployment, rules)

    def connection(self, deployment: str, name: str) -> tuple[Connection, str]:
        model = self.registry.get_model(self.store.resolve(deployment).model_crn)
        if model.project_crn is None:
            raise NotFound(
                f"deployment {deployment}'s model {model.name!r} is in no project, so it has no "
                f"connection {name!r}; start the server once to give it one"
            )
        return self.registry.connections.get(model.project_crn, name), model.project_crn

    def label_watermark(self, monitor: str, deployment: str) -> Any | None:
        return self.registry.labels.watermark(monitor)

    def record_import(
        self, monitor: str, deployment: str, project_crn: str, record: ImportRecord, advance_to: Any
    ) -> ImportRecord:
        return self.registry.labels.record(monitor, project_crn, record, advance_to=advance_to)

    def label_imports(self, monitor: str, deployment: str, limit: int) -> list[ImportRecord]:
        self.store.resolve(deployment)
        return self.registry.labels.imports(monitor, limit)

    def add_delayed_many(
        self, items: Sequence[tuple[str, dict[str, Any]]], source: str
    ) -> DelayedBatch:
        return self.store.add_delayed_many(items, source, skip_unchanged=True)


def _flat_keys(metrics: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """A record's keys as a monitor names them (``read_metrics_frame``'s columns): a dict value
    gives dotted names too (``input`` -> ``input.tenure``)."""
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, dict):
            yield from _flat_keys(value, f"{name}.")
