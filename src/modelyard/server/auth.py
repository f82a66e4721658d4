"""Who may do what: bearer API keys checked against the registry, roles mapped to capabilities.

Roles come from the registry: ``admin`` may do everything; ``user`` may call models, read and
track metrics and read model state; ``run`` (a job run's or a replica's key) may only track and
read metrics. A key with a ``scope`` (a model CRN) is further limited to that model. Keys are
looked up by hash through the registry's 2-second cache, so checking one costs microseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum

from starlette.requests import Request

from modelyard.errors import Forbidden, Unauthorized
from modelyard.registry import ApiKey, Registry, Role

__all__ = [
    "ALLOWED_ROLES",
    "RUN_SCOPE_PREFIX",
    "Capability",
    "SessionKey",
    "authenticate",
    "authorize",
    "bearer_token",
    "check_scope",
    "model_scope",
    "requires",
]


class Capability(StrEnum):
    ADMIN = "admin"  # deploy, scale, delete, keys
    READ_MODELS = "read_models"  # list and show models, builds, logs
    CALL = "call"  # call a model through the gateway
    METRICS = "metrics"  # track and read metrics, /metrics


ALLOWED_ROLES: Mapping[Capability, frozenset[Role]] = {
    Capability.ADMIN: frozenset({Role.ADMIN}),
    Capability.READ_MODELS: frozenset({Role.ADMIN, Role.USER}),
    Capability.CALL: frozenset({Role.ADMIN, Role.USER}),
    Capability.METRICS: frozenset({Role.ADMIN, Role.USER, Role.RUN}),
}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None when absent)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "the Authorization header is not accepted; send 'Authorization: Bearer <API key>'"
        )
    return token.strip()


def authenticate(registry: Registry, authorization: str | None, capability: Capability) -> ApiKey:
    """The API key behind ``authorization`` if its role grants ``capability``.

    Unauthorized (401) for a missing, unknown, revoked or expired key; Forbidden (403) when the
    role does not allow the action.
    """
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized(
            "this route needs an API key; send 'Authorization: Bearer <API key>' (create one with "
            "'modelyard keys create')"
        )
    return authorize(registry.authenticate(token), capability)


def authorize(key: ApiKey, capability: Capability) -> ApiKey:
    """``key`` if its role grants ``capability``; Forbidden (403) naming the role otherwise."""
    allowed = ALLOWED_ROLES[capability]
    if key.role not in allowed:
        roles = ", ".join(sorted(str(r) for r in allowed))
        raise Forbidden(
            f"API key {key.id!r} ({key.name!r}) has role {str(key.role)!r}, which may not "
            f"{_WHAT[capability]}; accepted roles: {roles}",
            key_id=key.id,
            role=str(key.role),
        )
    return key


RUN_SCOPE_PREFIX = "crn:modelyard:run/"


def model_scope(key: ApiKey | None) -> str | None:
    """The model ``key`` is limited to, or None. A job run's key is scoped to its run (it may
    read only that run and post its metrics), not to a model: a monitoring job reads and writes
    the metrics of whichever models it watches, so a run scope does not limit models."""
    if key is None or key.scope is None or key.scope.startswith(RUN_SCOPE_PREFIX):
        return None
    return key.scope


def check_scope(key: ApiKey | None, model_crn: str) -> None:
    """Forbidden when ``key`` is limited to another model than ``model_crn``."""
    if key is not None and model_scope(key) is not None and key.scope != model_crn:
        raise Forbidden(
            f"API key {key.id!r} is limited to {key.scope!r} and may not act on {model_crn!r}; "
            "use a key for that model or an unscoped one",
            key_id=key.id,
        )


_WHAT = {
    Capability.ADMIN: "administer models and keys",
    Capability.READ_MODELS: "read model state",
    Capability.CALL: "call models",
    Capability.METRICS: "track or read metrics",
}


SessionKey = Callable[[Request], ApiKey | None]
"""``app.state.session_key``: the API key of the request's dashboard session (None: none)."""


def requires(capability: Capability) -> Callable[[Request], Awaitable[ApiKey]]:
    """A FastAPI dependency: the calling key, checked for ``capability``."""

    async def dependency(request: Request) -> ApiKey:
        registry: Registry = request.app.state.services.registry
        authorization = request.headers.get("authorization")
        # Without a bearer header, a dashboard session cookie may stand for the key (the
        # dashboard's fetch() calls); the hook checks the CSRF header on state-changing methods.
        session_key: SessionKey | None = getattr(request.app.state, "session_key", None)
        if authorization is None and session_key is not None:
            # Off the event loop: on a cache miss the session's key is read from the registry.
            key = await asyncio.to_thread(session_key, request)
            if key is not None:
                return authorize(key, capability)
        return authenticate(registry, authorization, capability)

    dependency.__name__ = f"requires_{capability.value}"
    return dependency
