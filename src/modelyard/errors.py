"""One exception root for everything Modelyard raises on purpose, and the wire vocabulary of errors.

Each subclass carries the HTTP status the server answers with and the ``code`` its error body
names, so the CLI, the SDK and the REST API agree on what kind of failure happened. Messages name
the bad value and what would be accepted.

The server and its clients share one vocabulary, kept here: ``error_body`` builds the error
object every refusal carries (``{"code", "message", "details"?}``), ``CODES`` lists every code a
Modelyard server sends, and ``error_class`` is the one mapping back from an answer to an
exception, ``code`` first and the HTTP status second (``modelyard.client`` uses it for the CLI,
the SDK and the monitors alike). ``__all__`` is the exception hierarchy.

>>> error_class("store_unavailable", 503).__name__
'StoreUnavailable'
>>> error_class("deploy_failed", 422).__name__, error_class(None, 502).__name__
('InvalidInput', 'ReplicaFailed')
>>> error_body("not_found", "no model 'churn'", {"model": "churn"})
{'code': 'not_found', 'message': "no model 'churn'", 'details': {'model': 'churn'}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "Conflict",
    "ConnectorError",
    "Forbidden",
    "GatewayTimeout",
    "InvalidInput",
    "ModelyardError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "ReplicaFailed",
    "ServerUnreachable",
    "StoreUnavailable",
    "Unauthorized",
    "Unavailable",
]


class ModelyardError(Exception):
    """Root of all Modelyard errors. ``status`` is the HTTP status the API answers with."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The one JSON error shape every API error uses."""
        return error_body(self.code, self.message, self.details)


class InvalidInput(ModelyardError, ValueError):
    status = 400
    code = "invalid_input"


class Unauthorized(ModelyardError):
    status = 401
    code = "unauthorized"


class Forbidden(ModelyardError):
    status = 403
    code = "forbidden"


class NotFound(ModelyardError, LookupError):
    status = 404
    code = "not_found"


class Conflict(ModelyardError):
    status = 409
    code = "conflict"


class PayloadTooLarge(InvalidInput):
    status = 413
    code = "payload_too_large"


class Overloaded(ModelyardError):
    """Every replica is busy and the wait queue is full or too slow; retry after a pause.

    ``details["retry_after_s"]`` is what the ``Retry-After`` header says.
    """

    status = 429
    code = "overloaded"


class ReplicaFailed(ModelyardError):
    """A replica broke off an exchange (connection reset or garbled answer after the request was
    sent). Resent once when no byte of the answer had come (unless the model is declared not safe
    to resend); this error means it was not, or could not be."""

    status = 502
    code = "replica_failed"


class ConnectorError(ModelyardError):
    """A connection's source could not be reached or read (refused, unknown host, bad
    credentials, missing table or column, dropped halfway). The message names the connection and
    what failed, never a credential. 502: the failure is the source's, not the caller's input."""

    status = 502
    code = "connector_failed"


class GatewayTimeout(ModelyardError):
    """A model did not answer within its request timeout."""

    status = 504
    code = "timeout"


class StoreUnavailable(ModelyardError):
    """The database cannot be used: locked, corrupt, unreachable, or from a newer Modelyard."""

    status = 503
    code = "store_unavailable"


class Unavailable(ModelyardError):
    """Nothing can serve the request right now: no active deployment, or no replica reachable."""

    status = 503
    code = "unavailable"


class ServerUnreachable(Unavailable):
    """No answer from the server at all (refused, timed out, name not resolved): raised by the
    client, never sent by a server."""

    code = "server_unreachable"


def error_body(
    code: str, message: str, details: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """The one error object of every refusal: ``{"code", "message", "details"?}`` plus ``extra``
    fields (the gateway's ``model_error`` adds the exception's ``type`` and ``traceback``).

    The REST API answers ``{"error": <this>}``, the gateway ``{"success": false, "error":
    <this>}``; ``details`` is left out when empty."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = dict(details)
    body.update(extra)
    return body


# Every code a Modelyard server puts in an error body, and the exception a client raises for it.
# The codes of the classes above come first; the rest name refusals whose classes live with the
# server (deploy_failed, build_failed, batch_output), the framework's own (method_not_allowed) and
# a model's own exception inside the gateway's envelope (model_error). "http_error", the code of
# any other framework status, is not listed: its status decides. tests/client checks that every
# ModelyardError subclass's code is listed and that the SDK and the CLI raise the same for each.
CODES: dict[str, type[ModelyardError]] = {
    cls.code: cls
    for cls in (
        ModelyardError,
        InvalidInput,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        Overloaded,
        ReplicaFailed,
        ConnectorError,
        GatewayTimeout,
        StoreUnavailable,
        Unavailable,
        ServerUnreachable,
    )
}
CODES.update(
    deploy_failed=InvalidInput,  # 422: the build or rollout failed; details say where
    build_failed=InvalidInput,  # 422: a build environment could not be made
    method_not_allowed=InvalidInput,  # 405
    unsupported_media_type=InvalidInput,  # 415 (a replica's answer)
    batch_output=ModelyardError,  # 500: a batch function answered the wrong number of outputs
    model_error=ModelyardError,  # 500: the model's own code raised
)

# An answer without a known code: its HTTP status decides; any other status is a ModelyardError.
_BY_STATUS: dict[int, type[ModelyardError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: InvalidInput,
    409: Conflict,
    413: PayloadTooLarge,
    415: InvalidInput,
    422: InvalidInput,
    429: Overloaded,
    502: ReplicaFailed,
    503: Unavailable,
    504: GatewayTimeout,
}


def error_class(code: str | None, status: int) -> type[ModelyardError]:
    """The exception for an error answer: its ``code`` when known, else its HTTP ``status``."""
    found = CODES.get(code) if isinstance(code, str) else None
    return found if found is not None else _BY_STATUS.get(status, ModelyardError)
