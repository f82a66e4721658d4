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
=======  ==============================================  ===========================================

Prediction records are buffered in the process and sent in batches by a background thread
(every ``MODELYARD_FLUSH_INTERVAL`` or 1,000 records), so a prediction never waits on the
network; ``flush()`` sends what is queued and returns once the server has answered.

Until the server part exists this backend is tested for the requests it sends and for its error
translation only, against a small HTTP server started in the test.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from modelyard import settings
from modelyard.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    ModelyardError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthorized,
)
from modelyard.store.base import (
    Distribution,
    Identity,
    Prediction,
    Query,
    Record,
    RecordKind,
    RowBatch,
)
from modelyard.tracking.backends import Backend
from modelyard.tracking.identity import local_identity

if TYPE_CHECKING:
    import httpx

__all__ = ["RemoteBackend", "ServerUnreachable", "close_clients", "error_from_response", "request"]

_BATCH = 1_000
_STATUS_ERRORS: dict[int, type[ModelyardError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: Overloaded,
    503: Overloaded,
}


class ServerUnreachable(ModelyardError):
    """No answer from the server at all (refused, timed out, name not resolved)."""

    status = 503
    code = "server_unreachable"


def error_from_response(response: httpx.Response, what: str) -> ModelyardError:
    """The ModelyardError for an HTTP error answer, carrying the server's own message."""
    message = response.text.strip()[:2000]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, str):
        message = body
    elif isinstance(body, dict):
        nested = body.get("error")
        if isinstance(nested, dict):  # the server's {"error": {"code", "message", ...}}
            body = nested
        for field in ("message", "error", "detail"):
            if isinstance(body.get(field), str):
                message = body[field]
                break
    cls = _STATUS_ERRORS.get(response.status_code)
    if cls is None:
        cls = StoreUnavailable if response.status_code >= 500 else ModelyardError
    err = cls(
        f"{what} failed with HTTP {response.status_code}: {message or response.reason_phrase}",
        status=response.status_code,
    )
    if cls is ModelyardError:
        err.status = response.status_code
    return err


_CLIENTS: dict[int, Any] = {}


def _client() -> Any:
    """One ``httpx.Client`` per process, so calls reuse connections and the CA store is loaded
    once (a fresh client per call cost about 60 ms, nearly all of it ``load_verify_locations``)."""
    import httpx

    pid = os.getpid()  # a forked child must not share the parent's sockets
    client = _CLIENTS.get(pid)
    if client is None:
        client = _CLIENTS.setdefault(pid, httpx.Client())
    return client


def close_clients() -> None:
    """Close this process's shared client (at exit, after the backends' last flush)."""
    client = _CLIENTS.pop(os.getpid(), None)
    if client is not None:
        client.close()


def request(
    method: str,
    url: str,
    api_key: str | None,
    what: str,
    json_body: Any = None,
    params: Any = None,
    timeout: float = 30.0,
) -> Any:
    """One HTTP call: the parsed JSON answer (None for an empty one) or a ModelyardError."""
    import httpx

    headers = {"Accept": "application/json"}
    content = None
    if json_body is not None:
        try:
            content = orjson.dumps(json_body)
        except orjson.JSONEncodeError as exc:
            raise InvalidInput(f"{what}: the request body is not JSON-encodable ({exc})") from exc
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        response = _client().request(
            method, url, content=content, params=params, headers=headers, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise ServerUnreachable(
            f"{what}: no answer from {url} ({exc.__class__.__name__}: {exc}); check that the "
            "server runs and that MODELYARD_URL points at it"
        ) from exc
    if response.status_code >= 400:
        raise error_from_response(response, what)
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise ModelyardError(
            f"{what}: {url} answered HTTP {response.status_code} with a body that is not JSON "
            f"({response.text[:200]!r})"
        ) from exc


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


class RemoteBackend(Backend):
    """The SDK's backend over HTTP (paths in the module docstring)."""

    name = "remote"

    def __init__(self, url: str, api_key: str | None, identity: Identity | None) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self._identity = identity
        self._queue: list[Prediction] = []
        self._cond = threading.Condition()
        self._sending = 0
        self._error: ModelyardError | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def identity(self) -> Identity:
        if self._identity is None:
            self._identity = local_identity()
        return self._identity

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        return request(method, f"{self.url}{path}", self.api_key, what, **kwargs)

    # -- buffered predictions -------------------------------------------------------------------
    def submit(self, prediction: Prediction) -> None:
        with self._cond:
            if self._closed:
                raise ModelyardError(
                    "the remote backend is closed; records can no longer be submitted"
                )
            self._queue.append(prediction)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="modelyard-remote-writer", daemon=True
                )
                self._thread.start()
            if len(self._queue) >= _BATCH:
                self._cond.notify_all()

    def _run(self) -> None:
        interval_s = settings.get("flush_interval") / 1000
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(interval_s)
                if not self._queue and self._closed:
                    return
                batch, self._queue = self._queue, []
                self._sending += 1
            try:
                if batch:
                    self._send(batch)
            except ModelyardError as exc:
                self._error = exc
            finally:
                with self._cond:
                    self._sending -= 1
                    self._cond.notify_all()

    def _send(self, batch: list[Prediction]) -> None:
        for i in range(0, len(batch), _BATCH):
            self._call(
                "POST",
                "/api/v1/metrics/predictions",
                "sending prediction records",
                json_body={"predictions": [_record_json(p) for p in batch[i : i + _BATCH]]},
            )

    def flush(self) -> None:
        with self._cond:
            self._cond.notify_all()
            while self._queue or self._sending:
                if self._thread is None or not self._thread.is_alive():
                    batch, self._queue = self._queue, []
                    self._send(batch)
                    break
                self._cond.wait(0.05)
            error, self._error = self._error, None
        if error is not None:
            raise error

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
        body = self._call("GET", "/api/v1/metrics", "reading metrics", params=params)
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
        body = self._call(
            "GET",
            "/api/v1/metrics/distribution",
            f"reading the distribution of {key!r}",
            params=params,
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
        self._call(
            "POST",
            "/api/v1/metrics/delayed",
            f"tracking delayed metrics for prediction {uuid!r}",
            json_body={"predictionUuid": uuid, "metrics": metrics, "source": source},
        )

    def add_aggregate(
        self, deployment_crn: str, start_ms: int, end_ms: int, metrics: dict[str, Any]
    ) -> None:
        self._call(
            "POST",
            "/api/v1/metrics/aggregate",
            f"tracking aggregate metrics for {deployment_crn!r}",
            json_body={
                "modelDeploymentCrn": deployment_crn,
                "startTimeStampMs": start_ms,
                "endTimeStampMs": end_ms,
                "metrics": metrics,
            },
        )

    def track_run_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        from urllib.parse import quote

        self._call(
            "POST",
            f"/api/v1/runs/{quote(run_id, safe='')}/metrics",
            f"tracking metrics of run {run_id!r}",
            json_body={"metrics": metrics},
        )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join(timeout=5)
