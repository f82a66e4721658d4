"""``/api/v1/keys``: create, list and revoke API keys.

Anyone signed in (a user's key, not a run key) creates, lists and revokes their own keys; server
administrators see and revoke every key and may create one for another user (``user``). A key
never mints a key wider than itself (``modelyard.web.keys``, which the dashboard's form calls
too). Another user's key id answers 404, like an unknown id (ids do not leak). A token is shown
once, in the answer that creates it; the registry keeps only its SHA-256 hash and first
characters.

Plain ``def`` routes: FastAPI runs them on its thread pool, so the registry's database is never
waited on by the event loop the model gateway shares."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from modelyard.errors import Forbidden, NotFound
from modelyard.registry import ApiKey, Registry
from modelyard.web.access import Caller, Right, requires
from modelyard.web.jsonable import jsonable
from modelyard.web.keys import CreateKeyRequest, new_key
from modelyard.web.services import ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
SignedIn = Annotated[Caller, Depends(requires(Right.SIGNED_IN))]


def _keys_of(registry: Registry, caller: Caller, user: str | None = None) -> list[ApiKey]:
    """The keys ``caller`` may see: their own; every key (or ``user``'s) for an administrator.
    A key limited to one model reaches no keys (they belong to no single model)."""
    if caller.model_scope is not None:
        raise Forbidden(
            f"{caller.who} calls with a key limited to model {caller.model_scope!r}, and API "
            "keys belong to no single model; use a key that is not limited to a model",
            scope=caller.model_scope,
        )
    if caller.server_admin:
        if user is None:
            return registry.list_api_keys()
        user_id = registry.people.get_user(user).id
        return registry.list_api_keys(user_id=user_id)
    assert caller.user is not None  # SIGNED_IN
    if user is not None and user != caller.user.name:
        raise NotFound(
            f"user {user!r} is not known, or not yours to list; you see your own keys only",
            user=user,
        )
    return registry.list_api_keys(user_id=caller.user.id)


@router.post("", status_code=201, summary="Create an API key (its token is shown once)")
def create_key(body: CreateKeyRequest, services: ServicesDep, caller: SignedIn) -> dict[str, Any]:
    created, token = new_key(services.registry, body, caller)
    return {"key": jsonable(created), "token": token}


@router.get("", summary="Your API keys (server administrators: every key); no tokens")
def list_keys(
    services: ServicesDep,
    caller: SignedIn,
    user: Annotated[str | None, Query(description="only this user's keys")] = None,
) -> dict[str, Any]:
    return {"keys": jsonable(_keys_of(services.registry, caller, user))}


@router.delete("/{key_id}", summary="Revoke an API key (idempotent)")
def revoke_key(key_id: str, services: ServicesDep, caller: SignedIn) -> dict[str, Any]:
    registry = services.registry
    mine = _keys_of(registry, caller)  # refuses a key limited to a model
    if not caller.server_admin and all(k.id != key_id for k in mine):
        raise NotFound(
            f"API key id {key_id!r} is not known, or not yours; GET /api/v1/keys lists yours",
            key_id=key_id,
        )
    return {"key": jsonable(registry.revoke_api_key(key_id))}
