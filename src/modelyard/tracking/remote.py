"""The remote backend: the SDK talking to a Modelyard server over HTTP.

Selected when ``MODELYARD_URL`` is set. Every request carries ``Authorization: Bearer
<MODELYARD_API_KEY>``. The server implements these paths (JSON bodies, records in the reference
shape of ``Record.to_reference()``, errors in the one shape of ``ModelyardError.to_dict()``):

=======  ==============================================  ===========================================
method   path                                            body / answer
=======  ==============================================  ===========================================
POST     ``/api/v1/metrics/predictions``                 ``{"predictions": [{"predictionUuid",
                                                         "modelCrn", "modelBuildCrn",
                                                         "modelDeploymentCrn", "startTimeStampMs",
                                                         "endTimeStampMs", "metrics"}, ...]}``
                                                         -> 204 once durable
POST     ``/api/v1/metrics/delayed``                     ``{"predictionUuid", "metrics", "source"}``
                                                         -> 204; 404 for an unknown uuid
POST     ``/api/v1/metrics/delayed/batch``           ``{"items": [{"predictionUuid", "metrics"},
                                                         ...], "source", "skipUnchanged"}`` ->
                                                         ``{"stored", "unchanged", "unknown"}``
POST     ``/api/v1/metrics/aggregate``                   ``{"modelDeploymentCrn",
                                                         "startTimeStampMs", "endTimeStampMs",
                                                         "metrics"}`` -> 204
GET      ``/api/v1/metrics``                             query ``modelCrn``, ``modelBuildCrn``,
                                                         ``modelDeploymentCrn``,
                                                         ``startTimeStampMs``, ``endTimeStampMs``,
                                                         ``kind`` (repeatable), ``limit``,
                                                         ``pageToken`` -> ``{"metrics": [...],
                                                         "nextPageToken": str | null}``; each
                                                         record also carries ``"kind"`` and, for
                                                         rollups, ``"tierMs"``
GET      ``/api/v1/metrics/distribution``                query ``key``, the identifiers and window
                                                         as above, ``quantile`` (repeatable),
                                                         ``bins`` -> ``{"key", "count", "exact",
                                                         "rank_error", "quantiles": {"0.5": v},
                                                         "bin_edges", "bin_counts", "min", "max",
                                                         "mean"}``
POST     ``/api/v1/runs/{run_id}/metrics``               ``{"metrics": {...}}`` -> 204
POST     ``/api/v1/runs/{run_id}/files``                 ``{"path": "<relative to the run's
                                                         folder>"}`` -> 204 (experiment runs)
PUT      ``/api/v1/runs/{run_id}/files/{path}``          the file's raw bytes, sent for every
                                                         tracked file when the script ends
                                                         (``run_uploads``) -> 200 the kept file
=======  ==============================================  ===========================================

Prediction records are buffered in the process and sent in batches (every
``MODELYARD_FLUSH_INTERVAL`` or 1,000 records) by the same ``BufferedWriter`` the embedded
backend uses, over an ``HttpSink``: a prediction never waits on the network, a batch the server
cannot take now (no answer, 429, 503, 504) is retried with back-off, and a batch it refuses is
split until the refused records are isolated and named, the others sent. ``flush()`` returns once
the server has answered for everything queued, and raises the first error not yet reported.

Every call goes through ``modelyard.client``, so an error answer raises the same exception here
as in the CLI (the server's ``code`` first, its status second), with a message saying which call
failed: ``"reading metrics failed with HTTP 404: <the server's message>"``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from modelyard.client import Client
from modelyard.errors import ModelyardError, PayloadTooLarge
from modelyard.store.base import (
    DelayedBatch,
    Distribution,
    Identity,
    Prediction,
    Query,
    Record,
    RecordKind,
    RowBatch,
)
from modelyard.store.writer import BufferedWriter
from modelyard.tracking import run_uploads
from modelyard.tracking._env import RUN_DIR_ENV
from modelyard.tracking.base import Backend
from modelyard.tracking.identity import local_identity

__all__ = ["HttpSink", "RemoteBackend"]

_BATCH = 1_000
_PREDICTIONS_PATH = "/api/v1/metrics/predictions"
_DELAYED_BATCH_PATH = "/api/v1/metrics/delayed/batch"
# A chunk of delayed items per request: well inside the server's 100,000 items and its
# MODELYARD_MAX_BATCH_BYTES (64 MB by default); a server with a lower cap answers 413 and the
# chunk is split in two until it fits.
DELAYED_CHUNK_ITEMS = 20_000
DELAYED_CHUNK_BYTES = 8 * 1024 * 1024


def _record_json(p: Prediction) -> dict[str, Any]:
    return {
        "predictionUuid": p.uuid,
        "modelCrn": p.identity.model_crn,
        "modelBuildCrn": p.identity.build_crn,
        "modelDeploymentCrn": p.identity.deployment_crn,
        "startTimeStampMs": p.start_ms,
        "endTimeStampMs": p.end_ms,
        "metrics": p.metrics,
    }


def _record_from_json(item: dict[str, Any]) -> Record:
    return Record(
        kind=RecordKind(item.get("kind") or _guess_kind(item)),
        identity=Identity(item["modelCrn"], item["modelBuildCrn"], item["modelDeploymentCrn"]),
        start_ms=int(item["startTimeStampMs"]),
        end_ms=int(item["endTimeStampMs"]),
        uuid=item.get("predictionUuid"),
        metrics=item.get("metrics") or {},
        tier_ms=item.get("tierMs"),
    )


def _nan_if_none(value: Any) -> float:
    """A quantile the server sent as null (no values) back to the store's NaN."""
    return float("nan") if value is None else float(value)


def _guess_kind(item: dict[str, Any]) -> str:
    return "prediction" if item.get("predictionUuid") else "aggregate"


class HttpSink:
    """A ``PredictionSink`` (``modelyard.store.writer``) that POSTs a batch to the server.

    A batch of one names its record in the error (``sending prediction 'u1' failed with HTTP
    409: ...``), which is how the writer reports the records it isolated.
    """

    def __init__(self, client: Client) -> None:
        self.client = client

    def write_predictions(self, predictions: Sequence[Prediction]) -> None:
        if not predictions:
            return
        what = (
            f"sending prediction {predictions[0].uuid!r}"
            if len(predictions) == 1
            else "sending prediction records"
        )
        body = {"predictions": [_record_json(p) for p in predictions]}
        self.client.call("POST", _PREDICTIONS_PATH, body, what=what)

    def __repr__(self) -> str:
        return f"the server at {self.client.url}"


class RemoteBackend(Backend):
    """The SDK's backend over HTTP (paths in the module docstring). ``client`` is the shared
    client with this backend's URL and key, for other calls to the same server (monitors)."""

    name = "remote"

    def __init__(self, url: str, api_key: str | None, identity: Identity | None) -> None:
        self.client = Client(url, api_key)
        self.url = self.client.url
        self.api_key = api_key
        self._identity = identity
        self._lock = threading.Lock()
        self._writer: BufferedWriter | None = None  # started by the first record
        self._closed = False

    @property
    def identity(self) -> Identity:
        if self._identity is None:
            self._identity = local_identity()
        return self._identity

    # -- buffered predictions -------------------------------------------------------------------
    def submit(self, prediction: Prediction) -> None:
        writer = self._writer
        if writer is None or self._closed:
            writer = self._open_writer()
        writer.submit(prediction)

    def _open_writer(self) -> BufferedWriter:
        with self._lock:
            if self._closed:
                raise ModelyardError(
                    "the remote backend is closed; records can no longer be submitted"
                )
            if self._writer is None:
                self._writer = BufferedWriter(HttpSink(self.client), max_batch=_BATCH)
            return self._writer

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    # -- direct calls ---------------------------------------------------------------------------
    def read(self, query: Query) -> tuple[list[Record], str | None]:
        params: list[tuple[str, str | int]] = [("startTimeStampMs", query.start_ms)]
        for name, value in (
            ("modelCrn", query.model_crn),
            ("modelBuildCrn", query.build_crn),
            ("modelDeploymentCrn", query.deployment_crn),
            ("endTimeStampMs", query.end_ms),
            ("limit", query.limit),
            ("pageToken", query.after),
        ):
            if value is not None:
                params.append((name, value))
        params.extend(("kind", str(k)) for k in sorted(query.kinds))
        body = self.client.call("GET", "/api/v1/metrics", params=params, what="reading metrics")
        records = [_record_from_json(item) for item in body.get("metrics", [])]
        return records, body.get("nextPageToken")

    def scan(self, query: Query, batch_size: int) -> Iterator[RowBatch]:
        after = query.after
        while True:
            page_query = Query(
                model_crn=query.model_crn,
                build_crn=query.build_crn,
                deployment_crn=query.deployment_crn,
                start_ms=query.start_ms,
                end_ms=query.end_ms,
                kinds=query.kinds,
                limit=batch_size,
                after=after,
            )
            records, after = self.read(page_query)
            batch = RowBatch()
            for r in records:
                batch.kind.append(str(r.kind))
                batch.uuid.append(r.uuid)
                batch.model_crn.append(r.identity.model_crn)
                batch.build_crn.append(r.identity.build_crn)
                batch.deployment_crn.append(r.identity.deployment_crn)
                batch.start_ms.append(r.start_ms)
                batch.end_ms.append(r.end_ms)
                batch.metrics.append(orjson.dumps(r.metrics).decode())
                batch.tier_ms.append(r.tier_ms)
            if len(batch):
                yield batch
            if after is None:
                return

    def distribution(
        self, query: Query, key: str, quantiles: Sequence[float], bins: int
    ) -> Distribution:
        params: list[tuple[str, str | int | float]] = [
            ("key", key),
            ("startTimeStampMs", query.start_ms),
            ("bins", bins),
        ]
        for name, value in (
            ("modelCrn", query.model_crn),
            ("modelBuildCrn", query.build_crn),
            ("modelDeploymentCrn", query.deployment_crn),
            ("endTimeStampMs", query.end_ms),
        ):
            if value is not None:
                params.append((name, value))
        params.extend(("quantile", repr(float(q))) for q in quantiles)
        body = self.client.call(
            "GET",
            "/api/v1/metrics/distribution",
            params=params,
            what=f"reading the distribution of {key!r}",
        )
        return Distribution(
            key=body["key"],
            count=int(body["count"]),
            exact=bool(body["exact"]),
            rank_error=float(body["rank_error"]),
            quantiles={float(q): _nan_if_none(v) for q, v in body["quantiles"].items()},
            bin_edges=[float(e) for e in body["bin_edges"]],
            bin_counts=[int(c) for c in body["bin_counts"]],
            min=body["min"],
            max=body["max"],
            mean=body["mean"],
        )

    def add_delayed(self, uuid: str, metrics: dict[str, Any], source: str) -> None:
        self.client.call(
            "POST",
            "/api/v1/metrics/delayed",
            {"predictionUuid": uuid, "metrics": metrics, "source": source},
            what=f"tracking delayed metrics for prediction {uuid!r}",
        )

    def add_delayed_many(
        self,
        items: Sequence[tuple[str, dict[str, Any]]],
        source: str,
        skip_unchanged: bool = False,
    ) -> DelayedBatch:
        """``POST /api/v1/metrics/delayed/batch`` in chunks that fit the body limit (each chunk
        one transaction on the server); the answers summed, unknown uuids in batch order."""
        stored = unchanged = 0
        unknown: list[str] = []
        chunk: list[bytes] = []
        size = 0
        for uuid, metrics in items:
            part = orjson.dumps(
                {"predictionUuid": uuid, "metrics": metrics}, option=orjson.OPT_SERIALIZE_NUMPY
            )
            if chunk and (
                len(chunk) >= DELAYED_CHUNK_ITEMS or size + len(part) > DELAYED_CHUNK_BYTES
            ):
                answer = self._send_delayed(chunk, source, skip_unchanged)
                stored, unchanged = stored + answer.stored, unchanged + answer.unchanged
                unknown += answer.unknown
                chunk, size = [], 0
            chunk.append(part)
            size += len(part) + 1
        if chunk:
            answer = self._send_delayed(chunk, source, skip_unchanged)
            stored, unchanged = stored + answer.stored, unchanged + answer.unchanged
            unknown += answer.unknown
        return DelayedBatch(stored, tuple(dict.fromkeys(unknown)), unchanged)

    def _send_delayed(self, parts: list[bytes], source: str, skip_unchanged: bool) -> DelayedBatch:
        body = {
            "items": orjson.Fragment(b"[" + b",".join(parts) + b"]"),
            "source": source,
            "skipUnchanged": skip_unchanged,
        }
        try:
            answer = self.client.call(
                "POST",
                _DELAYED_BATCH_PATH,
                body,
                what=f"tracking delayed metrics for {len(parts)} predictions",
            )
        except PayloadTooLarge:
            if len(parts) == 1:
                raise
            half = len(parts) // 2
            first = self._send_delayed(parts[:half], source, skip_unchanged)
            second = self._send_delayed(parts[half:], source, skip_unchanged)
            return DelayedBatch(
                first.stored + second.stored,
                first.unknown + second.unknown,
                first.unchanged + second.unchanged,
            )
        return DelayedBatch(
            int(answer["stored"]), tuple(answer["unknown"]), int(answer.get("unchanged", 0))
        )

    def add_aggregate(
        self, deployment_crn: str, start_ms: int, end_ms: int, metrics: dict[str, Any]
    ) -> None:
        self.client.call(
            "POST",
            "/api/v1/metrics/aggregate",
            {
                "modelDeploymentCrn": deployment_crn,
                "startTimeStampMs": start_ms,
                "endTimeStampMs": end_ms,
                "metrics": metrics,
            },
            what=f"tracking aggregate metrics for {deployment_crn!r}",
        )

    def track_run_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        self.client.call(
            "POST",
            f"/api/v1/runs/{quote(run_id, safe='')}/metrics",
            {"metrics": metrics},
            what=f"tracking metrics of run {run_id!r}",
        )

    def track_run_file(self, run_id: str, path: str) -> None:
        self.client.call(
            "POST",
            f"/api/v1/runs/{quote(run_id, safe='')}/files",
            {"path": path},
            what=f"tracking file {path!r} of run {run_id!r}",
        )
        run_dir = os.environ.get(RUN_DIR_ENV)
        if run_dir:  # its bytes are sent when the script ends (run_uploads)
            run_uploads.remember(self.client, run_id, path, run_dir)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._writer is not None:
            self._writer.close()
