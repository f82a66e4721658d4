"""``/api/v1/keys``: create, list and revoke API keys (unscoped admin keys only: a key limited
to one model may not mint keys, so no key can make one wider than itself). A token is shown
once, in the answer that creates it; the registry keeps only its SHA-256 hash and first
characters.

A ``scope`` limits a key to one model: given as the model's name or CRN, stored as its CRN (a
new model of the same name later is another model). The registry refuses anything else, and
admin keys with a scope; job-run scopes (``crn:modelyard:run/...``) are minted only by the
runner, never here."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import InvalidInput
from modelyard.registry import RUN_SCOPE_PREFIX, ApiKey, Registry
from modelyard.server.auth import Capability, requires
from modelyard.server.jsonable import jsonable
from modelyard.settings import parse_duration_ms

__all__ = ["CreateKeyRequest", "new_key", "router"]

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
Admin = Annotated[ApiKey, Depends(requires(Capability.ADMIN))]


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("key", min_length=1, max_length=200)
    role: str = Field("user", description="admin, user or run")
    expires: str | None = Field(
        "365d", description="lifetime such as 30d or 12h; 'never' for admin keys only"
    )
    scope: str | None = Field(
        None,
        description="the name or CRN of the model the key is limited to (stored as the CRN); "
        "user and run keys only",
    )


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.services.registry
    return registry


@router.post("", status_code=201, summary="Create an API key (its token is shown once)")
async def create_key(body: CreateKeyRequest, request: Request, key: Admin) -> dict[str, Any]:
    created, token = await asyncio.to_thread(new_key, _registry(request), body)
    return {"key": jsonable(created), "token": token}


def new_key(registry: Registry, body: CreateKeyRequest) -> tuple[ApiKey, str]:
    """Create the key ``body`` describes (the API route and the dashboard's form both call it);
    returns the key and its token, which exists only in this answer."""
    if body.scope is not None and body.scope.startswith(RUN_SCOPE_PREFIX):
        raise InvalidInput(
            f"scope={body.scope!r} is a job run's scope: the runner mints that key when the run "
            "starts, and no other key may carry it; accepted: a model's name or CRN, or no scope",
            argument="scope",
        )
    expires_in_ms: int | None
    if body.expires is None or body.expires.strip().lower() == "never":
        expires_in_ms = None
    else:
        expires_in_ms = parse_duration_ms(body.expires, "expires")
        if expires_in_ms <= 0:
            raise InvalidInput(f"expires={body.expires!r} must be a positive duration such as 30d")
    return registry.create_api_key(
        body.name, role=body.role, expires_in_ms=expires_in_ms, scope=body.scope
    )


@router.get("", summary="Every API key (revoked and expired too; no tokens)")
async def list_keys(request: Request, key: Admin) -> dict[str, Any]:
    return {"keys": jsonable(await asyncio.to_thread(_registry(request).list_api_keys))}


@router.delete("/{key_id}", summary="Revoke an API key (idempotent)")
async def revoke_key(key_id: str, request: Request, key: Admin) -> dict[str, Any]:
    return {"key": jsonable(await asyncio.to_thread(_registry(request).revoke_api_key, key_id))}
