"""One JSON error shape for every answer the server refuses: ``{"error": {"code", "message",
"details"?}}``, built from ``ModelyardError.to_dict()``.

The framework's own refusals (unknown path 404, wrong method 405, a body that fails validation
422, anything unexpected 500) are translated into the same shape, so a client never has to parse
two kinds of error. The gateway routes answer in the reference envelope instead
(``{"success": false, "error": {...}}``), which carries the same inner object.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import ModelyardError

__all__ = ["DeployFailed", "error_response", "install_error_handlers"]

log = logging.getLogger("modelyard.server")

_FRAMEWORK_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "invalid_input",
}


def error_response(error: ModelyardError, headers: dict[str, str] | None = None) -> Response:
    """The JSON answer for ``error`` with its own status (plus ``Retry-After`` when it has one)."""
    extra = dict(headers or {})
    retry = error.details.get("retry_after_s")
    if isinstance(retry, int) and not isinstance(retry, bool):
        extra["Retry-After"] = str(retry)
    if error.status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    return Response(
        orjson.dumps({"error": error.to_dict()}, default=str),
        status_code=error.status,
        media_type="application/json",
        headers=extra,
    )


def _shape(status: int, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": _FRAMEWORK_CODES.get(status, "http_error"), "message": message}
    if details:
        body["details"] = details
    return {"error": body}


async def _modelyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelyardError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = (
            f"no route {request.url.path!r}; the REST API is under /api/v1 (see /openapi.json)"
        )
    elif exc.status_code == 405:
        message = (
            f"method {request.method} is not accepted on {request.url.path!r}; accepted: "
            f"{(exc.headers or {}).get('Allow', 'see /openapi.json')}"
        )
    else:
        message = str(exc.detail)
    return Response(
        orjson.dumps(_shape(exc.status_code, message)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=dict(exc.headers or {}),
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for item in exc.errors():
        where = ".".join(str(part) for part in item.get("loc", ()))
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    message = "the request is not accepted: " + "; ".join(problems) + " (see /openapi.json)"
    details = {"errors": [{k: v for k, v in e.items() if k != "ctx"} for e in exc.errors()]}
    return Response(
        orjson.dumps(_shape(422, message, details), default=str),
        status_code=422,
        media_type="application/json",
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    body = {
        "error": {
            "code": "internal",
            "message": f"internal error ({exc.__class__.__name__}); the server log has details",
        }
    }
    return Response(orjson.dumps(body), status_code=500, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ModelyardError, _modelyard_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


class DeployFailed(ModelyardError):
    """The build or the rollout failed; ``details`` carries the identifiers and the log tail.

    The running deployment, if any, is untouched and still serves.
    """

    status = 422
    code = "deploy_failed"
