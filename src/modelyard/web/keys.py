"""Creating an API key: the request both the REST route (``POST /api/v1/keys``) and the
dashboard's keys form send, and the one function that checks it and asks the registry.

A token is shown once, in the answer that creates it; the registry keeps only its SHA-256 hash
and first characters. A ``scope`` limits a key to one model: given as the model's name or CRN,
stored as its CRN. Job-run scopes (``crn:modelyard:run/...``) are minted only by the runner,
never here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import InvalidInput
from modelyard.registry import RUN_SCOPE_PREFIX, ApiKey, Registry
from modelyard.settings import parse_duration_ms

__all__ = ["CreateKeyRequest", "new_key"]


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


def new_key(registry: Registry, body: CreateKeyRequest) -> tuple[ApiKey, str]:
    """Create the key ``body`` describes (the API route and the dashboard's form both call it);
    returns the key and its token, which exists only in this answer. Blocking (a registry
    write)."""
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
