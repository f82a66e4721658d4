"""``MonitorAccess`` over HTTP: what a monitor does when the SDK here talks to a server.

Windows are read with the SDK's remote ``scan`` (``GET /api/v1/metrics``, paged); everything else
goes to the server's ``/api/v1/monitors/*`` and ``/api/v1/references/data`` routes
(``modelyard.server.monitors_api``), which run ``EmbeddedAccess`` on the server's store. Every
call goes through the remote backend's ``client`` (``modelyard.client``: its URL, the SDK's key
``MODELYARD_API_KEY``, the same error translation), so inside a job the monitor acts with its
run's scoped key and needs no database access of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import pandas as pd

from modelyard.connectors.base import Connection
from modelyard.monitors.access import MonitorAccess, RecordedKeys, StoredResult
from modelyard.monitors.references import frame_from_columns
from modelyard.registry import KEEP_WATERMARK, ImportRecord
from modelyard.store.base import DelayedBatch, Distribution, Query, RowBatch
from modelyard.tracking.remote import RemoteBackend

__all__ = ["LABEL_TIMES_CHUNK", "RemoteAccess"]

LABEL_TIMES_CHUNK = 10_000  # uuids per POST /api/v1/monitors/label-times (the route's cap)


class RemoteAccess(MonitorAccess):
    """Each call is one request to the server with the SDK backend's URL and key."""

    def __init__(self, backend: RemoteBackend) -> None:
        self.backend = backend
        self.client = backend.client

    def _call(self, method: str, path: str, what: str, body: Any = None, params: Any = None) -> Any:
        return self.client.call(method, path, body, params=params, what=what)

    def resolve(self, deployment: str | None, model: str | None) -> str:
        params = {"deployment": deployment} if deployment is not None else {"model": model}
        body = self._call(
            "GET", "/api/v1/monitors/resolve", "resolving a deployment", params=params
        )
        return str(body["deployment_crn"])

    def scan(self, query: Query, batch_size: int) -> Iterator[RowBatch]:
        return self.backend.scan(query, batch_size)

    def recorded_keys(self, deployment: str, wanted: Sequence[str]) -> RecordedKeys:
        body = self._call(
            "GET",
            "/api/v1/monitors/keys",
            f"reading the keys {deployment!r} has recorded",
            params={"deployment": deployment, "wanted": list(wanted)},
        )
        return RecordedKeys(frozenset(str(k) for k in body["keys"]), int(body["records"]))

    def label_times(self, deployment: str, key: str, uuids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(uuids), LABEL_TIMES_CHUNK):
            body = self._call(
                "POST",
                "/api/v1/monitors/label-times",
                f"reading arrival times of label {key!r}",
                body={
                    "deployment": deployment,
                    "key": key,
                    "uuids": list(uuids[i : i + LABEL_TIMES_CHUNK]),
                },
            )
            out.update((str(u), int(t)) for u, t in body["times"].items())
        return out

    def late_label_windows(
        self, deployment: str, key: str, after_ms: int, through_ms: int, window_ms: int
    ) -> set[int]:
        body = self._call(
            "GET",
            "/api/v1/monitors/late-labels",
            f"looking for late labels of {deployment!r}",
            params={
                "deployment": deployment,
                "key": key,
                "after_ms": after_ms,
                "through_ms": through_ms,
                "window_ms": window_ms,
            },
        )
        return {int(s) for s in body["starts"]}

    def state(self, monitor: str, deployment: str) -> tuple[set[int], int | None]:
        body = self._call(
            "GET",
            f"/api/v1/monitors/{quote(monitor, safe='')}/state",
            f"reading the state of monitor {monitor!r}",
            params={"deployment": deployment},
        )
        mark = body["labels_through_ms"]
        return {int(s) for s in body["starts"]}, (None if mark is None else int(mark))

    def result(self, monitor: str, deployment: str, start_ms: int) -> StoredResult | None:
        body = self._call(
            "GET",
            f"/api/v1/monitors/{quote(monitor, safe='')}/results",
            f"result of monitor {monitor!r} at {start_ms}",
            params={"deployment": deployment, "start_ms": start_ms},
        )
        found = body["results"]
        if not found:
            return None
        r = found[0]
        return StoredResult(int(r["start_ms"]), int(r["end_ms"]), int(r["n"]), r["metrics"])

    def distribution(
        self, deployment: str, start_ms: int, end_ms: int, key: str, ranks: Sequence[float]
    ) -> Distribution:
        body = self._call(
            "POST",
            "/api/v1/monitors/distribution",
            f"distribution of {key!r} in {deployment!r}",
            body={
                "deployment": deployment,
                "start_ms": start_ms,
                "end_ms": end_ms,
                "key": key,
                "ranks": [float(r) for r in ranks],
            },
        )
        values = [math.nan if v is None else float(v) for v in body["values"]]
        return Distribution(
            key=key,
            count=int(body["count"]),
            exact=bool(body["exact"]),
            rank_error=float(body["rank_error"]),
            quantiles=dict(zip([float(r) for r in ranks], values, strict=True)),
            bin_edges=[],
            bin_counts=[],
            min=body["min"],
            max=body["max"],
            mean=body["mean"],
        )

    def reference(self, deployment: str, name: str) -> pd.DataFrame:
        body = self._call(
            "GET",
            "/api/v1/references/data",
            f"reading reference {name!r} of {deployment!r}",
            params={"deployment": deployment, "name": name},
        )
        return frame_from_columns(body["columns"], body["dtypes"])

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
        self._call(
            "PUT",
            f"/api/v1/monitors/{quote(monitor, safe='')}/results",
            f"saving window {start_ms}..{end_ms} of monitor {monitor!r}",
            body={
                "deployment": deployment,
                "source": source,
                "start_ms": start_ms,
                "end_ms": end_ms,
                "n": n,
                "metrics": metrics,
            },
        )

    def save_mark(self, monitor: str, deployment: str, through_ms: int) -> None:
        self._call(
            "PUT",
            f"/api/v1/monitors/{quote(monitor, safe='')}/state",
            f"saving the label mark of monitor {monitor!r}",
            body={"deployment": deployment, "labels_through_ms": through_ms},
        )

    def evaluate_alerts(
        self, monitor: str, deployment: str, rules: Sequence[str]
    ) -> list[dict[str, Any]]:
        body = self._call(
            "POST",
            f"/api/v1/monitors/{quote(monitor, safe='')}/alerts",
            f"evaluating the alerts of monitor {monitor!r}",
            body={"deployment": deployment, "rules": list(rules)},
        )
        return list(body["alerts"])

    # -- label imports ----------------------------------------------------------------------------
    def connection(self, deployment: str, name: str) -> tuple[Connection, str]:
        body = self._call(
            "GET",
            "/api/v1/monitors/connection",
            f"reading connection {name!r}",
            params={"deployment": deployment, "connection": name},
        )
        found = dict(body["connection"])
        return Connection(**found), str(body["project_crn"])

    def label_watermark(self, monitor: str, deployment: str) -> Any | None:
        body = self._call(
            "GET",
            f"/api/v1/monitors/{quote(monitor, safe='')}/labels",
            f"reading the label watermark of monitor {monitor!r}",
            params={"deployment": deployment, "limit": 1},
        )
        return body["watermark"]

    def label_imports(self, monitor: str, deployment: str, limit: int) -> list[ImportRecord]:
        body = self._call(
            "GET",
            f"/api/v1/monitors/{quote(monitor, safe='')}/labels",
            f"reading the label imports of monitor {monitor!r}",
            params={"deployment": deployment, "limit": limit},
        )
        return [ImportRecord.from_dict(r) for r in body["imports"]]

    def record_import(
        self, monitor: str, deployment: str, project_crn: str, record: ImportRecord, advance_to: Any
    ) -> ImportRecord:
        body = self._call(
            "PUT",
            f"/api/v1/monitors/{quote(monitor, safe='')}/labels",
            f"recording a label import of monitor {monitor!r}",
            body={
                "deployment": deployment,
                "record": record.to_dict(),
                "advance": advance_to is not KEEP_WATERMARK,
                "watermark": None if advance_to is KEEP_WATERMARK else advance_to,
            },
        )
        return ImportRecord.from_dict(body)

    def add_delayed_many(
        self, items: Sequence[tuple[str, dict[str, Any]]], source: str
    ) -> DelayedBatch:
        return self.backend.add_delayed_many(items, source, skip_unchanged=True)
