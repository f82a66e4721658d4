"""``/api/v1/keys``: create, list and revoke API keys (unscoped admin keys only: a key limited
to one model may not mint keys, so no key can make one wider than itself). A token is shown
once, in the answer that creates it; the registry keeps only its SHA-256 hash and first
characters.

A ``scope`` limits a key to one model: given as the model's name or CRN, stored as its CRN (a
new model of the same name later is another model). The registry refuses anything else, and
admin keys with a scope; job-run scopes (``crn:modelyard:run/...``) are minted only by the
runner, never here (``modelyard.web.keys``, which the dashboard's form calls too).

Plain ``def`` routes: FastAPI runs them on its thread pool, so the registry's database is never
waited on by the event loop the model gateway shares."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from modelyard.registry import ApiKey
from modelyard.web.auth import Capability, requires
from modelyard.web.jsonable import jsonable
from modelyard.web.keys import CreateKeyRequest, new_key
from modelyard.web.services import ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
Admin = Annotated[ApiKey, Depends(requires(Capability.ADMIN))]


@router.post("", status_code=201, summary="Create an API key (its token is shown once)")
def create_key(body: CreateKeyRequest, services: ServicesDep, key: Admin) -> dict[str, Any]:
    created, token = new_key(services.registry, body)
    return {"key": jsonable(created), "token": token}


@router.get("", summary="Every API key (revoked and expired too; no tokens)")
def list_keys(services: ServicesDep, key: Admin) -> dict[str, Any]:
    return {"keys": jsonable(services.registry.list_api_keys())}


@router.delete("/{key_id}", summary="Revoke an API key (idempotent)")
def revoke_key(key_id: str, services: ServicesDep, key: Admin) -> dict[str, Any]:
    return {"key": jsonable(services.registry.revoke_api_key(key_id))}
