"""An error answer of a Modelyard server as the matching ``ModelyardError``: the one translation.

The server answers ``{"error": {"code", "message", "details"?}}`` (the gateway wraps the same
object in its envelope, ``{"success": false, "error": {...}}``). The class comes from
``modelyard.errors.error_class``: the ``code`` first, the HTTP status when the code is missing or
unknown. Answers from something that is not a Modelyard server (a proxy's plain text, a flat
``{"message"}`` or ``{"detail"}`` object) are read as well as they can be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from modelyard.errors import ModelyardError, error_class

if TYPE_CHECKING:
    import httpx

__all__ = ["error_from_response"]

_MAX_MESSAGE = 2_000  # characters of a non-JSON answer kept as the message


def error_from_response(response: httpx.Response, what: str | None = None) -> ModelyardError:
    """The ModelyardError for an HTTP error answer, with the server's message, code and details.

    Without ``what`` the message is the server's own (what the CLI prints); with it, the message
    says which call failed: ``"<what> failed with HTTP <status>: <server's message>"`` (what the
    SDK raises), and ``details["status"]`` holds the status. Either way ``.status`` is the HTTP
    status and ``.code`` the server's code when it sent one.
    """
    status = response.status_code
    message, code, details = _read(response)
    message = message or response.reason_phrase
    if what is not None:
        message = f"{what} failed with HTTP {status}: {message}"
        details = {**details, "status": status}
    error = error_class(code, status)(message)
    error.details = details  # set, not passed: a detail may be called "message"
    error.status = status
    if code is not None:
        error.code = code  # the server's own code, e.g. deploy_failed
    return error


def _read(response: httpx.Response) -> tuple[str, str | None, dict[str, Any]]:
    """(message, code, details) of an error answer, whatever its shape."""
    message = response.text.strip()[:_MAX_MESSAGE]
    try:
        body: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return message, None, {}
    if isinstance(body, str):
        return body, None, {}
    if not isinstance(body, dict):
        return message, None, {}
    if isinstance(body.get("error"), dict):  # the server's {"error": {...}} and the envelope
        body = body["error"]
    code = body.get("code") if isinstance(body.get("code"), str) else None
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    for field in ("message", "error", "detail"):
        if isinstance(body.get(field), str):
            message = body[field]
            break
    return message, code, {str(k): v for k, v in details.items()}
