"""A cap on every request body, so no route holds or stores more than it was meant to take.

Before it, a 60 MB ``source`` on ``POST /api/v1/metrics/delayed`` was read whole, stored and
answered 204. The caps, by route (``limit_for``):

- the model calls (``POST /model``, ``.../predict``, ``.../predict_batch``): none here; the
  gateway applies the model's own ``max_body_bytes`` while it reads (``gateway_routes``);
- ``POST /api/v1/metrics/predictions`` (batches of up to 10,000 records) and
  ``POST /api/v1/metrics/delayed/batch`` (up to 100,000 delayed items):
  ``MODELYARD_MAX_BATCH_BYTES`` (64 MB);
- ``POST /api/v1/references`` (a reference sample): its own 50 MB (``alerts_api``);
- ``PUT /api/v1/uploads/blobs/{sha256}`` (one file of a project): the upload's per-file
  limit plus 1 MiB (``uploads_api`` checks the exact limit as the bytes arrive);
  ``POST /api/v1/uploads`` and ``.../missing`` (a manifest of up to 20,000 files): 16 MB;
- ``PUT /api/v1/runs/{uuid}/files/{path}`` (a file an experiment run kept):
  ``MAX_RUN_FILE_BYTES`` plus 1 MiB (``experiments_api`` checks the exact limit as the bytes
  arrive);
- every other route: ``MODELYARD_MAX_REQUEST_BYTES`` (2 MB), and never less than one record
  (``MODELYARD_MAX_RECORD_BYTES``) plus 64 KiB, so a delayed, aggregate or run metrics write
  can always carry a record the record limit accepts.

A declared ``Content-Length`` over the cap is answered 413 before the route runs; a body without
one (chunked) is counted as it arrives and refused with 413 as soon as it passes the cap, so an
oversized body is never held whole. Either way the answer is the API's one error shape and names
the cap and the setting that raises it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard import settings
from modelyard.builds.snapshot import DEFAULT_MAX_FILE_BYTES
from modelyard.errors import PayloadTooLarge
from modelyard.registry import MAX_RUN_FILE_BYTES
from modelyard.web.errors import error_response

__all__ = ["RECORD_ROOM", "BodyLimit", "BodyLimits"]

RECORD_ROOM = 64 * 1024  # the JSON around one record's metrics
_UNCAPPED_PREFIX = "/api/v1/models/"
_MODEL_CALL_SUFFIXES = ("/predict", "/predict_batch")
_BATCH_PATHS = ("/api/v1/metrics/predictions", "/api/v1/metrics/delayed/batch")
_UPLOAD_PATH = "/api/v1/references"
_UPLOAD_BYTES = 50 * 1024 * 1024 + 1024 * 1024  # alerts_api checks its 50 MB itself, exactly
_BLOB_PREFIX = "/api/v1/uploads/blobs/"
_BLOB_BYTES = DEFAULT_MAX_FILE_BYTES + 1024 * 1024  # uploads_api checks the exact limit itself
_MANIFEST_PATHS = ("/api/v1/uploads", "/api/v1/uploads/missing")
_MANIFEST_BYTES = 16 * 1024 * 1024
_RUNS_PREFIX = "/api/v1/runs/"
_RUN_FILE_BYTES = MAX_RUN_FILE_BYTES + 1024 * 1024  # experiments_api checks the exact limit


class BodyLimits:
    """The caps in force, read from the settings once (at app creation)."""

    def __init__(
        self,
        request_bytes: int | None = None,
        batch_bytes: int | None = None,
        record_bytes: int | None = None,
    ) -> None:
        record = settings.get("max_record_bytes") if record_bytes is None else record_bytes
        request = settings.get("max_request_bytes") if request_bytes is None else request_bytes
        batch = settings.get("max_batch_bytes") if batch_bytes is None else batch_bytes
        self.request_bytes: int = max(request, record + RECORD_ROOM)
        self.batch_bytes: int = batch

    def limit_for(self, path: str) -> tuple[int | None, str]:
        """(cap in bytes or None for no cap here, the setting that sets it) for ``path``."""
        if path == "/model" or (
            path.startswith(_UNCAPPED_PREFIX) and path.endswith(_MODEL_CALL_SUFFIXES)
        ):
            return None, "the model's max_body_bytes"
        if path in _BATCH_PATHS:
            return self.batch_bytes, "MODELYARD_MAX_BATCH_BYTES"
        if path == _UPLOAD_PATH:
            return _UPLOAD_BYTES, "the reference upload limit"
        if path.startswith(_BLOB_PREFIX):
            return _BLOB_BYTES, "the per-file limit of a project upload"
        if path in _MANIFEST_PATHS:
            return _MANIFEST_BYTES, "the manifest limit of a project upload"
        if path.startswith(_RUNS_PREFIX) and "/files/" in path:
            return _RUN_FILE_BYTES, "the per-file limit of an experiment run"
        return self.request_bytes, "MODELYARD_MAX_REQUEST_BYTES"


def _too_large(method: str, path: str, what: str, limit: int, setting: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is {what} bytes; {method} {path} accepts at most {limit} bytes "
        f"({setting}); send less",
        limit=limit,
    )


class _Overflow(HTTPException):
    """Raised from ``receive`` once a streamed body passes the cap. An ``HTTPException``, which
    FastAPI lets through its body parsing (any other error there becomes a vague 400), and which
    the error handlers answer in the one shape."""


class BodyLimit:
    """ASGI middleware applying ``BodyLimits`` to every HTTP request."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit, setting = self.limits.limit_for(path)
        if limit is None:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        for name, value in scope["headers"]:
            if name == b"content-length":
                # (a length of 19 digits or more is over any cap, and int() of thousands of
                # digits would raise)
                if value.isdigit() and (len(value) > 18 or int(value) > limit):
                    error = _too_large(method, path, value[:40].decode(), limit, setting)
                    await error_response(error, {"Connection": "close"})(scope, receive, send)
                    return
                break
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    error = _too_large(method, path, f"more than {limit}", limit, setting)
                    raise _Overflow(413, error.message)
            return message

        await self.app(scope, counted, send)
