"""The audit trail of the HTTP API: one ``registry.audit`` entry per state-changing request.

``AuditTrail`` is raw ASGI middleware (like ``server.body_limit``: no ``BaseHTTPMiddleware``, which
would buffer responses and run the route in another task). It records every request whose method
is not GET, HEAD or OPTIONS under ``/api/v1/`` and ``/ui/``, once the response has been sent:

- **who**: ``request.state.caller`` as the access layer (``web.access``) left it: its ``actor``
  (a user name, or ``key:<id>`` for a run key) and its key's id; ``anonymous`` when no caller was
  made (no key, an unknown key);
- **what**: the matched route's endpoint as ``<part>.<function>`` (``models.deploy``,
  ``keys.create_key``, ``ui.login``; ``<part>`` is the module without its ``_api`` suffix), or
  ``<METHOD> <path>`` when no route matched;
- **which object**: the path parameters (``churn``; ``name=churn,build=3f2a`` for several), and
  the project the access layer resolved (``caller.project_crn``);
- **from where**: the client's address; **when**: when the answer was sent (the change is
  done by then; ``details.duration_ms`` says how long the request took);
- **how it ended**: ``ok`` below 400, ``denied`` for 401 and 403, ``failed`` otherwise, with the
  status (500 when the route raised).

Never a body, a header, a query string or a cookie: ``details`` holds the method, the route's
path template and the duration only (and the registry scrubs whatever it is given besides).

Not recorded, because they are calls or data, not changes, and as frequent as traffic: the model
calls (``POST /model``, ``/api/v1/models/{name}/predict`` and ``predict_batch``), metric writes
(``/api/v1/metrics/...``, ``/api/v1/runs/{id}/metrics``), the files a run names to keep and
their bytes (``/api/v1/runs/{id}/files`` and ``.../files/{path}``, recorded with the run), an
upload's files (``PUT /api/v1/uploads/blobs/{digest}``, one per file; the upload itself, ``POST
/api/v1/uploads``, is recorded) and the queries sent as POST (``/api/v1/monitors/label-times``,
``/api/v1/monitors/distribution``, ``/api/v1/uploads/missing``). The dashboard's sign-in
form (``POST /ui/login``) records each attempt itself (``ui.sign_in``, naming who tried), so the
trail leaves it out rather than add an anonymous twin.

A route can say more about its request through ``request.state.audit`` (a dict): ``actor``,
``action``, ``object``, ``project_crn``, ``outcome`` and ``details`` replace what the trail would
have written (the dashboard's sign-in names the user signing in and says ``failed`` for a wrong
password answered with a page), and ``{"skip": True}`` leaves the request out (a route that
recorded it itself).

Entries are written by ``AuditRecorder``: a bounded queue and one daemon thread calling
``registry.audit.record``, so the event loop never waits on the database. A full queue (the
database far behind) drops entries with a warning rather than hold requests; ``registry.audit``
itself keeps a small backlog through a store outage.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.clock import now_ms

__all__ = ["AUDITED_PREFIXES", "AuditRecorder", "AuditTrail", "action_of", "audited", "outcome_of"]

log = logging.getLogger("modelyard.audit")

AUDITED_PREFIXES = ("/api/v1/", "/ui/")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MODELS = "/api/v1/models/"
_MODEL_CALLS = ("/predict", "/predict_batch")
_NOT_AUDITED = frozenset(
    {
        "/api/v1/monitors/label-times",
        "/api/v1/monitors/distribution",
        "/api/v1/uploads/missing",
        "/ui/login",  # records each attempt itself, naming who tried (``ui.sign_in``)
    }
)
# Data, not changes: metric records, and an upload's file contents (one request per file; the
# upload that names them, POST /api/v1/uploads, is recorded, and so is the deploy that uses it).
_DATA_PREFIXES = ("/api/v1/metrics/", "/api/v1/uploads/blobs/")
_OVERRIDES = frozenset({"actor", "action", "object", "project_crn", "outcome", "details"})
QUEUE_SIZE = 10_000


def audited(method: str, path: str) -> bool:
    """Whether a request is recorded (see the module docstring).

    >>> audited("POST", "/api/v1/models/churn/deploy"), audited("GET", "/api/v1/models")
    (True, False)
    >>> audited("POST", "/api/v1/models/churn/predict"), audited("POST", "/model")
    (False, False)
    >>> audited("POST", "/api/v1/runs/0b7e/files"), audited("POST", "/api/v1/experiments")
    (False, True)
    >>> audited("PUT", "/api/v1/runs/0b7e/files/out/model.pkl")
    False
    """
    if method in _SAFE_METHODS or not path.startswith(AUDITED_PREFIXES):
        return False
    if path.startswith(_MODELS) and path.endswith(_MODEL_CALLS):
        return False
    if path.startswith(_DATA_PREFIXES) or path in _NOT_AUDITED:
        return False
    return not (
        path.startswith("/api/v1/runs/")
        and (path.endswith(("/metrics", "/files")) or "/files/" in path)
    )


def outcome_of(status: int) -> str:
    """``ok`` below 400, ``denied`` for 401 and 403, ``failed`` for the rest."""
    if status < 400:
        return "ok"
    return "denied" if status in (401, 403) else "failed"


def action_of(scope: Scope) -> str:
    """``<part>.<function>`` of the matched endpoint, else ``<METHOD> <route or path>``."""
    endpoint = scope.get("endpoint")
    name = getattr(endpoint, "__name__", None)
    module = getattr(endpoint, "__module__", None)
    if name and module and callable(endpoint):
        parts = module.split(".")
        part = parts[1] if len(parts) > 2 and parts[1] == "ui" else parts[-1]
        return f"{part.removesuffix('_api')}.{name}"
    route = getattr(scope.get("route"), "path", None) or scope.get("path", "")
    return f"{scope.get('method', '?')} {route}"


def _object(params: Mapping[str, Any] | None) -> str | None:
    if not params:
        return None
    if len(params) == 1:
        return str(next(iter(params.values())))
    return ",".join(f"{k}={v}" for k, v in params.items())


class AuditRecorder:
    """Writes entries to ``registry.audit`` on its own thread (started on first use)."""

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self._queue: queue.Queue[tuple[Any, dict[str, Any]] | None] = queue.Queue(size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._dropped = 0

    def submit(self, registry: Any, entry: dict[str, Any]) -> None:
        """Queue ``registry.audit.record(**entry)``; never blocks (a full queue drops it)."""
        self._start()
        try:
            self._queue.put_nowait((registry, entry))
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning(
                    "audit log: %d entries dropped: the database is not keeping up with %d waiting",
                    self._dropped,
                    self._queue.maxsize,
                )

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="modelyard-audit", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                registry, entry = item
                registry.audit.record(**entry)
            except Exception:  # an audit entry must never take the writer down
                log.exception("audit log: an entry could not be recorded")
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued entry is written (True) or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> bool:
        """Write what is queued and stop the thread (a later ``submit`` starts it again)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        flushed = self.flush(timeout)
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return False
        thread.join(max(0.1, timeout))
        return flushed


class AuditTrail:
    """ASGI middleware recording state-changing requests (see the module docstring)."""

    def __init__(self, app: ASGIApp, recorder: AuditRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not audited(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        started = now_ms()
        path = scope["path"]
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500  # what the client gets if the route raises before answering

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            try:
                self._record(scope, state, status, started)
            except Exception:  # the request is answered: auditing must not turn it into an error
                log.exception("audit log: the entry of %s %s was not made", scope["method"], path)

    def _record(self, scope: Scope, state: Mapping[str, Any], status: int, started: int) -> None:
        registry = getattr(getattr(scope.get("app"), "state", None), "services", None)
        registry = getattr(registry, "registry", None)
        if registry is None:  # the server is not started (or already stopped)
            return
        overrides = state.get("audit")
        if not isinstance(overrides, Mapping):
            overrides = {}
        if overrides.get("skip"):
            return
        caller = state.get("caller")
        key = getattr(caller, "key", None)
        client = scope.get("client")
        route = getattr(scope.get("route"), "path", None)
        details: dict[str, Any] = {"method": scope["method"]}
        if route:
            details["route"] = route
        at_ms = now_ms()
        details["duration_ms"] = max(0, at_ms - started)
        entry: dict[str, Any] = {
            "actor": getattr(caller, "actor", None) or "anonymous",
            "action": action_of(scope),
            "key_id": getattr(key, "id", None),
            "object": _object(scope.get("path_params")),
            "project_crn": getattr(caller, "project_crn", None),
            "address": client[0] if client else None,
            "outcome": outcome_of(status),
            "status": status,
            "details": details,
            "at_ms": at_ms,
        }
        entry.update({k: v for k, v in overrides.items() if k in _OVERRIDES})
        self.recorder.submit(registry, entry)
