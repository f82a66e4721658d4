"""One exception root for everything Modelyard raises on purpose.

Each subclass carries the HTTP status the server answers with, so the CLI, the SDK and the REST
API agree on what kind of failure happened. Messages name the bad value and what would be accepted.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "Forbidden",
    "GatewayTimeout",
    "InvalidInput",
    "ModelyardError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "ReplicaFailed",
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
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


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
    sent). Not retried: the replica may have started the work."""

    status = 502
    code = "replica_failed"


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
