"""Creating an API key: the request both the REST route (``POST /api/v1/keys``) and the
dashboard's keys form send, and the one function that checks it and asks the registry.

A key belongs to a user and acts with that user's rights (``web/access.py``). Anyone signed in
makes keys for themselves; server administrators also for another user (``user``). A key may be
narrowed to one Modelyard project (``project``), one model (``scope``: the model's name or CRN,
stored as its CRN) and a role (``project_role``) at most the user's own there; the registry
refuses what the user does not have. A key never mints a key wider than itself: a key narrowed
to a project or a role passes that narrowing on, and a key limited to one model mints none.
``run`` keys are minted by the server (one per deployment, one per job run), never here.

A token is shown once, in the answer that creates it; the registry keeps only its SHA-256 hash
and first characters.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import Forbidden, InvalidInput
from modelyard.registry import RUN_SCOPE_PREFIX, ApiKey, ProjectRole, Registry, Role
from modelyard.settings import parse_duration_ms
from modelyard.web.access import Caller, resolve_project

__all__ = ["CreateKeyRequest", "new_key"]


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("key", min_length=1, max_length=200)
    role: str = Field(
        "user",
        description="admin (all the user's rights, a server administrator's included; only a "
        "server administrator may hold one) or user (the user's project roles)",
    )
    expires: str | None = Field(
        "365d", description="lifetime such as 30d or 12h; 'never' for admin keys only"
    )
    scope: str | None = Field(
        None,
        description="the name or CRN of the model the key is limited to (stored as the CRN)",
    )
    user: str | None = Field(
        None, description="whose key (server administrators only; default: your own)"
    )
    project: str | None = Field(
        None, description="the Modelyard project the key is limited to (owner/name, name, CRN)"
    )
    project_role: str | None = Field(
        None, description="viewer, operator, contributor or admin: the most the key may do"
    )


def _expiry(body: CreateKeyRequest) -> int | None:
    if body.expires is None or body.expires.strip().lower() == "never":
        return None
    expires_in_ms = parse_duration_ms(body.expires, "expires")
    if expires_in_ms <= 0:
        raise InvalidInput(f"expires={body.expires!r} must be a positive duration such as 30d")
    return expires_in_ms


def _project_role(value: str | None) -> ProjectRole | None:
    if value is None:
        return None
    try:
        return ProjectRole(value)
    except ValueError:
        accepted = ", ".join(r.value for r in ProjectRole)
        raise InvalidInput(
            f"project_role={value!r} is not a role; accepted: {accepted}",
            argument="project_role",
        ) from None


def _narrowing(
    registry: Registry, caller: Caller, body: CreateKeyRequest
) -> tuple[str | None, ProjectRole | None]:
    """The new key's project CRN and role cap: as asked, within the calling key's own
    narrowing (inherited when not given; Forbidden when asked wider)."""
    project = None if body.project is None else resolve_project(registry, caller, body.project)
    crn = None if project is None else project.crn
    role = _project_role(body.project_role)
    key = caller.key
    if key is None or caller.server_admin:
        return crn, role
    if key.scope is not None:
        raise Forbidden(
            f"API key {key.id!r} is limited to model {key.scope!r} and may not create keys; "
            "use a key that is not limited to a model",
            key_id=key.id,
        )
    if key.role is Role.USER and body.role == Role.ADMIN.value:
        raise Forbidden(
            f"API key {key.id!r} has role 'user' and may not create an 'admin' key (it would "
            "act with more than the key itself); accepted: role 'user', or use an admin key",
            key_id=key.id,
        )
    if key.project_crn is not None:
        if crn is not None and crn != key.project_crn:
            raise Forbidden(
                f"API key {key.id!r} is limited to one project and may create keys for that "
                f"project only, not {body.project!r}; leave project out (the new key gets it)",
                key_id=key.id,
            )
        crn = key.project_crn
    if key.project_role is not None:
        if role is not None and role.rank > key.project_role.rank:
            raise Forbidden(
                f"API key {key.id!r} is narrowed to {key.project_role.value} and may not create "
                f"a key with project_role={role.value!r}; accepted: "
                f"{key.project_role.value} or lower",
                key_id=key.id,
            )
        role = role or key.project_role
    return crn, role


def new_key(registry: Registry, body: CreateKeyRequest, caller: Caller) -> tuple[ApiKey, str]:
    """Create the key ``body`` describes for ``caller`` (the API route and the dashboard's form
    both call it); returns the key and its token, which exists only in this answer. Blocking
    (registry reads and a write)."""
    if body.scope is not None and body.scope.startswith(RUN_SCOPE_PREFIX):
        raise InvalidInput(
            f"scope={body.scope!r} is a job run's scope: the runner mints that key when the run "
            "starts, and no other key may carry it; accepted: a model's name or CRN, or no scope",
            argument="scope",
        )
    if body.role == Role.RUN.value:
        raise InvalidInput(
            "role='run' keys are minted by the server, one per deployment and one per job run; "
            "accepted: role 'user' (your project roles) or 'admin'",
            argument="role",
        )
    if caller.user is None:
        raise Forbidden(f"{caller.who} belongs to no user and may not create keys")
    user = caller.user.name if body.user is None else body.user
    if user != caller.user.name and not caller.server_admin:
        raise Forbidden(
            f"{caller.who} may create keys for themselves only, not for user {user!r}; "
            "creating a key for another user needs a server administrator",
            user=user,
        )
    crn, role = _narrowing(registry, caller, body)
    where: dict[str, Any] = {"user": user}
    if crn is not None:
        where["project"] = crn
    if role is not None:
        where["project_role"] = role.value
    return registry.create_api_key(
        body.name, role=body.role, expires_in_ms=_expiry(body), scope=body.scope, **where
    )
