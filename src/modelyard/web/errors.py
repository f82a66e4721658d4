"""One JSON error shape for every answer the server refuses: ``{"error": {"code", "message",
"details"?}}``, built from ``ModelyardError.to_dict()``.

The framework's own refusals (unknown path 404, wrong method 405, a body that fails validation
422, anything unexpected 500) are translated into the same shape, so a client never has to parse
two kinds of error. The gateway routes answer in the reference envelope instead
(``{"success": false, "error": {...}}``), which carries the same inner object.

An error answer echoes what the client sent (a validation error's ``input``, a bad value in
``details``), and what a client sends is anything JSON can spell: integers beyond 64 bits, lone
surrogates, nesting hundreds of levels deep. orjson refuses all three, so a refusal could itself
fail with 500. ``json_bytes`` encodes with orjson and, only when that fails, encodes a bounded
copy in which every such value is replaced by a short text (``safe``).
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

from modelyard.errors import InvalidInput, ModelyardError, error_body

__all__ = ["DeployFailed", "error_response", "install_error_handlers", "json_bytes", "safe"]

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


_MAX_DEPTH = 8  # levels of an echoed value kept; deeper parts become their repr's start
_MAX_ITEMS = 50  # items of an echoed list or object kept
_MAX_TEXT = 1_000  # characters of an echoed string kept
_MAX_PROBLEMS = 20  # validation errors spelled out in a 422's message (all are in details)
_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson can write


def _text(value: str) -> str:
    if len(value) > _MAX_TEXT:
        value = value[:_MAX_TEXT] + f"... ({len(value)} characters)"
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: keep it visible, escaped
        value = value.encode("utf-8", "backslashreplace").decode()
    return value


def safe(value: Any, depth: int = 0) -> Any:
    """``value`` as something orjson always encodes, and bounded: integers beyond 64 bits, NaN
    and infinities as text, strings cut at 1,000 characters and made valid UTF-8, containers cut
    at 50 items and 8 levels, anything else as its (cut) ``repr``."""
    kind = type(value)
    if value is None or kind is bool:
        return value
    if kind is int:
        return value if _INT_RANGE[0] <= value <= _INT_RANGE[1] else _brief(value)
    if kind is float:
        return value if value == value and abs(value) != float("inf") else repr(value)
    if kind is str:
        return _text(value)
    if depth >= _MAX_DEPTH:
        return _brief(value)
    if isinstance(value, dict):
        items = list(value.items())
        out = {_text(str(k)): safe(v, depth + 1) for k, v in items[:_MAX_ITEMS]}
        if len(items) > _MAX_ITEMS:
            out["..."] = f"{len(items) - _MAX_ITEMS} more keys"
        return out
    if isinstance(value, list | tuple):
        kept = [safe(v, depth + 1) for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            kept.append(f"... {len(value) - _MAX_ITEMS} more items")
        return kept
    for base in (bool, int, float, str):  # subclasses (IntEnum, StrEnum...) as their base
        if isinstance(value, base):
            return safe(base(value), depth)
    return _brief(value)


def _brief(value: Any, limit: int = 200) -> str:
    """The start of ``repr(value)``, never failing (an int of over 4,300 digits has no repr)."""
    try:
        text = repr(value)
    except Exception:  # any object: describe it rather than fail the answer
        size = f" of {value.bit_length()} bits" if isinstance(value, int) else ""
        return f"<{type(value).__name__}{size}>"
    return _text(text if len(text) <= limit else text[:limit] + "...")


def json_bytes(document: Any) -> bytes:
    """``document`` as JSON: orjson as is (the common case, no copy), else its ``safe`` copy."""
    try:
        return orjson.dumps(document, default=str)
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps(safe(document))


def error_response(error: ModelyardError, headers: dict[str, str] | None = None) -> Response:
    """The JSON answer for ``error`` with its own status (plus ``Retry-After`` when it has one)."""
    extra = dict(headers or {})
    retry = error.details.get("retry_after_s")
    if isinstance(retry, int) and not isinstance(retry, bool):
        extra["Retry-After"] = str(retry)
    if error.status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    return Response(
        json_bytes({"error": error.to_dict()}),
        status_code=error.status,
        media_type="application/json",
        headers=extra,
    )


def _shape(status: int, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": error_body(_FRAMEWORK_CODES.get(status, "http_error"), message, details)}


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
        json_bytes(_shape(exc.status_code, message)),
        status_code=exc.status_code,
        media_type="application/json",
        headers=dict(exc.headers or {}),
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    """422 naming each field, what it needs and (for a scalar) the value sent. Every part that
    echoes the client's input is bounded and made encodable (``safe``, ``_brief``): this answer
    must never fail itself, nor grow with what was sent."""
    assert isinstance(exc, RequestValidationError)
    found = exc.errors()
    problems = []
    for item in found[:_MAX_PROBLEMS]:
        where = _text(".".join(str(part) for part in item.get("loc", ()))[:200])
        problem = f"{where}: {item.get('msg', 'invalid')}"
        given = item.get("input")
        scalar = given is None or isinstance(given, bool | int | float | str)
        if scalar and item.get("type") != "missing":
            problem += f" (got {_brief(given, 100)})"
        problems.append(problem)
    if len(found) > _MAX_PROBLEMS:
        problems.append(f"and {len(found) - _MAX_PROBLEMS} more (details.errors)")
    message = "the request is not accepted: " + "; ".join(problems) + " (see /openapi.json)"
    errors = safe([{k: v for k, v in item.items() if k != "ctx"} for item in found])
    document = _shape(422, message, {"errors": errors})
    return Response(json_bytes(document), status_code=422, media_type="application/json")


async def _not_unicode(request: Request, exc: Exception) -> Response:
    """JSON can spell a lone surrogate (``"\\ud800"``) and Python's json reads it into a str
    that no database and no UTF-8 file can hold: wherever a route stores or writes it, that
    fails. It is the client's text, so the answer is 400 naming it, never a 500."""
    assert isinstance(exc, UnicodeEncodeError)
    if "surrogate" not in exc.reason:
        raise exc  # a bug of ours: the 500 handler logs it
    bad = exc.object[exc.start : exc.end]
    return error_response(
        InvalidInput(
            f"a text value in the request holds {bad!r}, a lone UTF-16 surrogate, which is not "
            "Unicode text; send valid UTF-8 (a character beyond U+FFFF as itself or as a "
            "surrogate pair)"
        )
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    message = f"internal error ({exc.__class__.__name__}); the server log has details"
    body = {"error": error_body("internal", message)}
    return Response(orjson.dumps(body), status_code=500, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ModelyardError, _modelyard_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UnicodeEncodeError, _not_unicode)
    app.add_exception_handler(Exception, _unexpected)


class DeployFailed(ModelyardError):
    """The build or the rollout failed; ``details`` carries the identifiers and the log tail.

    The running deployment, if any, is untouched and still serves.
    """

    status = 422
    code = "deploy_failed"
