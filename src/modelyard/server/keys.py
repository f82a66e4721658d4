"""``/api/v1/keys``: create, list and revoke API keys (admin only). A token is shown once, in the
answer that creates it; the registry keeps only its SHA-256 hash and first characters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import InvalidInput
from modelyard.registry import ApiKey, Registry
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
    scope: str | None = Field(None, description="a model CRN the key is limited to")


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.services.registry
    return registry


@router.post("", status_code=201, summary="Create an API key (its token is shown once)")
async def create_key(body: CreateKeyRequest, request: Request, key: Admin) -> dict[str, Any]:
    created, token = new_key(_registry(request), body)
    return {"key": jsonable(created), "token": token}


def new_key(registry: Registry, body: CreateKeyRequest) -> tuple[ApiKey, str]:
    """Create the key ``body`` describes (the API route and the dashboard's form both call it);
    returns the key and its token, which exists only in this answer."""
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
    return {"keys": jsonable(_registry(request).list_api_keys())}


@router.delete("/{key_id}", summary="Revoke an API key (idempotent)")
async def revoke_key(key_id: str, request: Request, key: Admin) -> dict[str, Any]:
    return {"key": jsonable(_registry(request).revoke_api_key(key_id))}
