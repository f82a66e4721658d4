"""How a monitor reaches its data: the embedded store, or the server over HTTP.

A monitor needs more than the SDK's reads: when labels arrived (late-label detection and label
coverage), its own history (``monitor_results``, ``monitor_state``), the stored reference sample,
merged sketches of rolled-up windows, and its alerts. ``MonitorAccess`` is that narrow surface.

- ``EmbeddedAccess(store)`` runs it against a store in this process. Used when ``run_monitor`` is
  given a ``store``, or when the SDK's backend here is the embedded one (``MODELYARD_HOME`` or
  ``MODELYARD_DATABASE_URL`` set, no ``MODELYARD_URL``). The server's routes use it too.
- ``RemoteAccess`` (``modelyard.monitors.remote``) sends each call to the server's
  ``/api/v1/monitors/*`` routes with the SDK's key, and reads windows with the SDK's remote
  ``scan`` (``GET /api/v1/metrics``): used whenever the SDK's backend is remote, i.e. whenever
  ``MODELYARD_URL`` is set, as in a job run, which then acts with its run's scoped key only.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from modelyard.errors import InvalidInput, NotFound
from modelyard.monitors.spec import closest
from modelyard.store import sqlaccess
from modelyard.store.base import Distribution, MetricsStore, Query, RecordKind, RowBatch

__all__ = ["EmbeddedAccess", "MonitorAccess", "RecordedKeys", "StoredResult", "open_access"]

_IN_CHUNK = 500
KEY_SAMPLE = 1000  # latest prediction records whose keys a spec is checked against
LABEL_SAMPLE = 10_000  # latest delayed values (all deployments) looked through for labels
_PARTIAL_LIKE = '%"window.partial":true%'  # orjson writes no spaces


@dataclass(frozen=True)
class StoredResult:
    """A window result as kept in ``monitor_results``."""

    start_ms: int
    end_ms: int
    n: int
    metrics: dict[str, Any]


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


class EmbeddedAccess(MonitorAccess):
    """``MonitorAccess`` over a store in this process (SQL on the monitors' own tables)."""

    def __init__(self, store: MetricsStore) -> None:
        self.store = store

    def resolve(self, deployment: str | None, model: str | None) -> str:
        if deployment is not None:
            self.store.resolve(deployment)  # NotFound naming the CRN if unknown
            return deployment
        from modelyard.registry import Registry

        if model is None:
            raise InvalidInput("give a deployment CRN or a model name to resolve")
        active = Registry(self.store).active_deployment(model)
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
        self.store.resolve(deployment)
        query = Query(deployment_crn=deployment, kinds=frozenset({RecordKind.PREDICTION}))
        records = store.recent(query, KEY_SAMPLE)
        keys = {k for r in records for k in _flat_keys(r.metrics)}
        if not records:  # everything rolled up already: the buckets' summarised columns
            rolled = Query(deployment_crn=deployment, kinds=frozenset({RecordKind.ROLLUP}))
            records = store.recent(rolled, 20)
            keys = {str(k) for r in records for k in r.metrics if not str(k).startswith("_")}
        missing = [w for w in dict.fromkeys(wanted) if w not in keys]
        if missing and records:
            keys |= self._recent_label_keys(deployment, missing)
            missing = [w for w in missing if w not in keys and closest(w, keys)]
        if missing and records:
            # Labels arrive weeks after their predictions: look for a close-named key's values
            # among all of the deployment's delayed values before calling it unknown.
            with sqlaccess.reading(store) as cur:
                for key in missing:
                    row = cur.execute(
                        sqlaccess.sql(
                            store,
                            "SELECT 1 FROM delayed_metrics d "
                            "JOIN prediction_uuids p ON p.uuid = d.uuid "
                            "JOIN identities i ON i.id = p.deployment_id "
                            "WHERE d.key = ? AND i.deployment_crn = ? LIMIT 1",
                        ),
                        (key, deployment),
                    ).fetchone()
                    if row is not None:
                        keys.add(key)
        return RecordedKeys(frozenset(keys), len(records))

    def _recent_label_keys(self, deployment: str, wanted: Sequence[str]) -> set[str]:
        """Those of ``wanted`` among the latest ``LABEL_SAMPLE`` delayed values, for this
        deployment."""
        store = self.store
        marks = ", ".join("?" * len(wanted))
        with sqlaccess.reading(store) as cur:
            rows = cur.execute(
                sqlaccess.sql(
                    store,
                    "SELECT DISTINCT r.key FROM (SELECT uuid, key FROM delayed_metrics "
                    "ORDER BY tracked_ms DESC LIMIT ?) r "
                    "JOIN prediction_uuids p ON p.uuid = r.uuid "
                    "JOIN identities i ON i.id = p.deployment_id "
                    f"WHERE i.deployment_crn = ? AND r.key IN ({marks})",
                ),
                (LABEL_SAMPLE, deployment, *wanted),
            ).fetchall()
        return {str(r[0]) for r in rows}

    def label_times(self, deployment: str, key: str, uuids: Sequence[str]) -> dict[str, int]:
        first: dict[str, int] = {}
        store = self.store
        with sqlaccess.reading(store) as cur:
            for i in range(0, len(uuids), _IN_CHUNK):
                chunk = list(uuids[i : i + _IN_CHUNK])
                marks = ", ".join("?" * len(chunk))
                rows = cur.execute(
                    sqlaccess.sql(
                        store,
                        "SELECT d.uuid, MIN(d.tracked_ms) FROM delayed_metrics d "
                        "JOIN prediction_uuids p ON p.uuid = d.uuid "
                        "JOIN identities i ON i.id = p.deployment_id "
                        f"WHERE d.key = ? AND i.deployment_crn = ? AND d.uuid IN ({marks}) "
                        "GROUP BY d.uuid",
                    ),
                    (key, deployment, *chunk),
                ).fetchall()
                first.update((str(u), int(t)) for u, t in rows)
        return first

    def late_label_windows(
        self, deployment: str, key: str, after_ms: int, through_ms: int, window_ms: int
    ) -> set[int]:
        store = self.store
        with sqlaccess.reading(store) as cur:
            rows = cur.execute(
                sqlaccess.sql(
                    store,
                    "SELECT DISTINCT p.start_ms FROM delayed_metrics d "
                    "JOIN prediction_uuids p ON p.uuid = d.uuid "
                    "JOIN identities i ON i.id = p.deployment_id "
                    "WHERE d.tracked_ms > ? AND d.tracked_ms <= ? AND d.key = ? "
                    "AND i.deployment_crn = ?",
                ),
                (after_ms, through_ms, key, deployment),
            ).fetchall()
        return {int(r[0]) // window_ms * window_ms for r in rows}

    def state(self, monitor: str, deployment: str) -> tuple[set[int], int | None]:
        store = self.store
        with sqlaccess.reading(store) as cur:
            starts = {
                int(r[0])
                for r in cur.execute(
                    sqlaccess.sql(
                        store,
                        "SELECT start_ms FROM monitor_results WHERE monitor = ? "
                        "AND deployment_crn = ? AND metrics NOT LIKE ?",
                    ),
                    (monitor, deployment, _PARTIAL_LIKE),
                ).fetchall()
            }
            row = cur.execute(
                sqlaccess.sql(
                    store, "SELECT labels_through_ms FROM monitor_state WHERE monitor = ?"
                ),
                (monitor,),
            ).fetchone()
        return starts, (int(row[0]) if row else None)

    def result(self, monitor: str, deployment: str, start_ms: int) -> StoredResult | None:
        store = self.store
        with sqlaccess.reading(store) as cur:
            row = cur.execute(
                sqlaccess.sql(
                    store,
                    "SELECT start_ms, end_ms, n, metrics FROM monitor_results "
                    "WHERE monitor = ? AND deployment_crn = ? AND start_ms = ?",
                ),
                (monitor, deployment, start_ms),
            ).fetchone()
        if row is None:
            return None
        return StoredResult(int(row[0]), int(row[1]), int(row[2]), orjson.loads(row[3]))

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
        from modelyard.monitors._store import now_ms

        store = self.store
        labelled = metrics.get("labelled") or 0
        text = orjson.dumps(metrics).decode()

        def write(cur: sqlaccess.Cursor) -> None:
            cur.execute(
                sqlaccess.sql(
                    store, "DELETE FROM monitor_results WHERE monitor = ? AND start_ms = ?"
                ),
                (monitor, start_ms),
            )
            cur.execute(
                sqlaccess.sql(
                    store,
                    "INSERT INTO monitor_results (monitor, deployment_crn, start_ms, end_ms, n, "
                    "labelled, metrics, computed_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ),
                (monitor, deployment, start_ms, end_ms, n, labelled, text, now_ms()),
            )

        # An empty window is a mark that it was looked at (monitor_results), not a result: no
        # aggregate record of n=0 for `metrics read` to show.
        if n > 0 or metrics.get("n"):
            store.replace_aggregate(deployment, start_ms, end_ms, metrics, source)
        sqlaccess.transaction(store, write)

    def save_mark(self, monitor: str, deployment: str, through_ms: int) -> None:
        from modelyard.monitors._store import now_ms

        store = self.store

        def write(cur: sqlaccess.Cursor) -> None:
            cur.execute(
                sqlaccess.sql(store, "DELETE FROM monitor_state WHERE monitor = ?"), (monitor,)
            )
            cur.execute(
                sqlaccess.sql(
                    store,
                    "INSERT INTO monitor_state (monitor, deployment_crn, labels_through_ms, "
                    "updated_ms) VALUES (?, ?, ?, ?)",
                ),
                (monitor, deployment, through_ms, now_ms()),
            )

        sqlaccess.transaction(store, write)

    def evaluate_alerts(
        self, monitor: str, deployment: str, rules: Sequence[str]
    ) -> list[dict[str, Any]]:
        from modelyard.monitors.alerts import evaluate_monitor

        return evaluate_monitor(self.store, monitor, deployment, rules)


def _flat_keys(metrics: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """A record's keys as a monitor names them (``read_metrics_frame``'s columns): a dict value
    gives dotted names too (``input`` -> ``input.tenure``)."""
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, dict):
            yield from _flat_keys(value, f"{name}.")


def open_access(store: MetricsStore | None) -> MonitorAccess:
    """``store`` if given; else the SDK's backend here: embedded store, or the server (remote)."""
    if store is not None:
        return EmbeddedAccess(store)
    from modelyard.tracking import backends

    backend = backends.select()
    if isinstance(backend, backends.StoreBackend) and backend.name == "embedded":
        backend.flush()  # predictions this process tracked are in the window it reads
        return EmbeddedAccess(backend.store)
    if backend.name == "remote":
        from modelyard.monitors.remote import RemoteAccess
        from modelyard.tracking.remote import RemoteBackend

        assert isinstance(backend, RemoteBackend)
        backend.flush()
        return RemoteAccess(backend)
    raise InvalidInput(
        f"monitors need a metrics store or a server, but the SDK backend here is "
        f"{backend.name!r}; set MODELYARD_URL (and MODELYARD_API_KEY) to a server, or "
        "MODELYARD_HOME / MODELYARD_DATABASE_URL to a store"
    )
