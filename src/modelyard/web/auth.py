"""Who may do what: bearer API keys checked against the registry, roles mapped to capabilities,
and a key's ``scope`` narrowing what it reaches. REST routes and the dashboard both decide with
the functions here, so the two can never disagree.

The rule (docs/security.md has it as a table):

- a role grants capabilities: ``admin`` everything; ``user`` call models and read model state and
  metrics; ``run`` (a job run's or a replica's key) only track and read metrics;
- a key with a model scope (a model CRN) reaches that model only, everywhere: lists leave other
  models out, and a route naming another model, or one that does not exist, answers the same
  403, which names no other model (so a limited key learns neither names nor existence);
- a scoped key never administers (``authorize`` refuses ``Capability.ADMIN``; creation refuses
  such keys): deploying and jobs run code on the server's machine as the server, so no scope
  could hold them, and a key may never mint a key wider than itself;
- what belongs to no single model (jobs and runs, API keys, the Prometheus ``/metrics``) is
  refused to model-scoped keys;
- a job run's own key is scoped to its run (``crn:modelyard:run/<uuid>``): it reads that run
  only, and reads and writes the metrics of whichever models its monitor watches;
- environment values (a deployment's or a job's) are shown only to keys that may administer.

Keys are looked up by hash through the registry's 2-second cache, so checking one costs
microseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from enum import StrEnum

from starlette.requests import Request

from modelyard.errors import Forbidden, NotFound, Unauthorized
from modelyard.registry import RUN_SCOPE_PREFIX, ApiKey, Model, Registry, Role
from modelyard.store.base import MetricsStore
from modelyard.web.services import services_of

__all__ = [
    "ALLOWED_ROLES",
    "MASK",
    "RUN_SCOPE_PREFIX",
    "Capability",
    "SessionKey",
    "authenticate",
    "authenticate_on_loop",
    "authorize",
    "bearer_token",
    "check_deployment_scope",
    "check_prediction_scope",
    "check_scope",
    "check_unscoped",
    "may_administer",
    "model_scope",
    "requires",
    "scoped_model",
    "shown_env",
    "visible",
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

MASK = "***"


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
    role (or, for administration, the key's scope) does not allow the action.
    """
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized(
            "this route needs an API key; send 'Authorization: Bearer <API key>' (create one with "
            "'modelyard keys create')"
        )
    return authorize(registry.authenticate(token), capability)


async def authenticate_on_loop(
    registry: Registry, authorization: str | None, capability: Capability
) -> ApiKey:
    """``authenticate`` for a caller on the event loop (the predict routes): answered from the
    registry's key cache when it can be, else on a worker thread, so the loop never waits on the
    database. The same answers and refusals as ``authenticate``."""
    token = bearer_token(authorization)
    if token is not None:
        cached = registry.cached_api_key(token)
        if cached is not None:
            return authorize(cached, capability)
    return await asyncio.to_thread(authenticate, registry, authorization, capability)


def authorize(key: ApiKey, capability: Capability) -> ApiKey:
    """``key`` if its role grants ``capability`` and, for ``ADMIN``, it has no scope; Forbidden
    (403) naming the role or the scope otherwise.

    A scoped admin key can exist only if it was created before scopes were checked: it keeps
    what its scope allows a ``user`` key and administers nothing (it fails closed)."""
    allowed = ALLOWED_ROLES[capability]
    if key.role not in allowed:
        roles = ", ".join(sorted(str(r) for r in allowed))
        raise Forbidden(
            f"API key {key.id!r} ({key.name!r}) has role {str(key.role)!r}, which may not "
            f"{_WHAT[capability]}; accepted roles: {roles}",
            key_id=key.id,
            role=str(key.role),
        )
    if capability is Capability.ADMIN and key.scope is not None:
        raise Forbidden(
            f"API key {key.id!r} ({key.name!r}) is limited to {key.scope!r}, and a limited key "
            "may not administer: deploying and jobs run code on the server's machine and keys "
            "grant access, which no scope can hold; use an unscoped admin key",
            key_id=key.id,
            scope=key.scope,
        )
    return key


def may_administer(key: ApiKey | None) -> bool:
    """Whether ``key`` may administer (an unscoped admin key): it alone sees environment values
    and the dashboard's admin controls."""
    return key is not None and key.role is Role.ADMIN and key.scope is None


def model_scope(key: ApiKey | None) -> str | None:
    """The model ``key`` is limited to, or None when it is not limited to one model.

    A job run's key (role ``run``, scoped to its run) is not limited to a model: a monitoring
    job reads and writes the metrics of whichever models it watches. Any other key with a scope
    is limited to exactly that value, so a scope that names no model (a run CRN on a ``user``
    key stored before scopes were checked) reaches no model at all: it fails closed."""
    if key is None or key.scope is None:
        return None
    if key.role is Role.RUN and key.scope.startswith(RUN_SCOPE_PREFIX):
        return None
    return key.scope


def visible(key: ApiKey | None, model_crn: str) -> bool:
    """Whether ``key`` may see the model ``model_crn`` (what lists keep)."""
    scope = model_scope(key)
    return scope is None or scope == model_crn


def _limited(key: ApiKey, subject: str) -> Forbidden:
    return Forbidden(
        f"API key {key.id!r} is limited to model {key.scope!r} and may not act on {subject}; "
        "accepted: that model's own names and identifiers, or use an unscoped key",
        key_id=key.id,
        scope=key.scope,
    )


def check_scope(key: ApiKey | None, model_crn: str, subject: str | None = None) -> None:
    """Forbidden when ``key`` is limited to another model than ``model_crn``. The message names
    ``subject`` (what the request named; default: "another model"), never the other model."""
    if key is not None and not visible(key, model_crn):
        raise _limited(key, subject or "another model")


def scoped_model(registry: Registry, key: ApiKey | None, name: str) -> Model:
    """The model ``name`` (a name or CRN) if ``key`` may see it. An unscoped key gets the
    registry's NotFound for an unknown name; a scoped key gets the same Forbidden for an unknown
    model and for another one, so the answer tells it neither which models exist nor their
    names. Blocking (a registry read)."""
    scope = model_scope(key)
    if key is None or scope is None:
        return registry.get_model(name)
    try:
        model = registry.get_model(scope)
    except NotFound:  # its model was deleted: the key reaches nothing
        raise _limited(key, f"model {name!r}") from None
    if name not in (model.name, model.crn):
        raise _limited(key, f"model {name!r}")
    return model


def check_unscoped(key: ApiKey | None, what: str) -> None:
    """Forbidden for a key limited to one model: ``what`` (jobs, runs, keys, server metrics)
    belongs to no single model, so a limited key may neither read nor change it."""
    if key is not None and model_scope(key) is not None:
        raise Forbidden(
            f"API key {key.id!r} is limited to model {key.scope!r}, and {what} belong to no "
            "single model; use an unscoped key",
            key_id=key.id,
            scope=key.scope,
        )


def check_deployment_scope(store: MetricsStore, key: ApiKey | None, deployment_crn: str) -> None:
    """Forbidden when ``key`` is limited to a model and ``deployment_crn`` is not one of its
    deployments; an unknown CRN gets the same answer (an unscoped key gets the store's own
    answer for it later). Blocking (a store read on a cache miss)."""
    scope = model_scope(key)
    if key is None or scope is None:
        return
    try:
        owner: str | None = store.resolve(deployment_crn).model_crn
    except NotFound:
        owner = None
    if owner != scope:
        raise _limited(
            key, f"deployment {deployment_crn!r}: it is not a deployment of that model, or unknown"
        )


def check_prediction_scope(
    store: MetricsStore,
    key: ApiKey | None,
    uuid: str,
    flush: Callable[[], None] | None = None,
) -> None:
    """Forbidden when ``key`` is limited to a model and ``uuid`` is not one of its predictions.
    An unknown uuid and another model's get the same answer, so the status does not tell a
    limited key whether a uuid exists. ``flush`` (the buffered writer's) is called once before
    giving up, for a prediction answered a moment ago. Blocking (store reads)."""
    scope = model_scope(key)
    if key is None or scope is None:
        return
    for attempt in range(2):
        try:
            if store.prediction_identity(uuid).model_crn == scope:
                return
            break
        except NotFound:
            if attempt or flush is None:
                break
            flush()
    raise _limited(key, f"prediction {uuid!r}: it is not a prediction of that model, or unknown")


def shown_env(env: Mapping[str, str], key: ApiKey | None) -> dict[str, str]:
    """``env`` for ``key``: values only for keys that may administer (they may hold secrets the
    code needs), names with the values masked for everyone else."""
    if may_administer(key):
        return dict(env)
    return {name: MASK for name in env}


_WHAT = {
    Capability.ADMIN: "administer models and keys",
    Capability.READ_MODELS: "read model state",
    Capability.CALL: "call models",
    Capability.METRICS: "track or read metrics",
}


SessionKey = Callable[[Request], ApiKey | None]
"""``app.state.session_key``: the API key of the request's dashboard session (None: none)."""


def requires(capability: Capability) -> Callable[[Request], ApiKey]:
    """A FastAPI dependency: the calling key, checked for ``capability``.

    A plain ``def`` on purpose: FastAPI runs it on its worker threads, so a cache miss (a
    registry read) never holds up the event loop the model gateway shares."""

    def dependency(request: Request) -> ApiKey:
        registry = services_of(request).registry
        authorization = request.headers.get("authorization")
        # Without a bearer header, a dashboard session cookie may stand for the key (the
        # dashboard's fetch() calls); the hook checks the CSRF header on state-changing methods.
        session_key: SessionKey | None = getattr(request.app.state, "session_key", None)
        if authorization is None and session_key is not None:
            key = session_key(request)
            if key is not None:
                return authorize(key, capability)
        return authenticate(registry, authorization, capability)

    dependency.__name__ = f"requires_{capability.value}"
    return dependency
