"""``/api/v1``: who is calling (``/me``), users, teams, projects and their collaborators.

- ``GET /api/v1/me``: the caller's user, whether they are a server admin, how their key is
  narrowed, and the projects they have a role in (any signed-in human; run keys have no user).
- Users and teams are the server's business: creating, disabling and changing them needs a
  server admin (``Right.SERVER``); any signed-in user may list teams (to share a project with
  one) and change their own password (``PUT /api/v1/me/password``, with the current one).
- Projects: any signed-in user creates projects they own (another owner: server admins only),
  lists the projects they can see, reads one they have a role in, and, as its admin, deletes it
  and changes its collaborators. Naming a project the caller has no role in answers 404 like an
  unknown one (``web.access`` decides, before the handler runs), so existence does not leak.

A project in a path is its bare name (when exactly one visible project has it), its uuid, or,
percent-encoded, ``owner/name`` or its CRN; the CLI sends the uuid. Plain ``def`` routes:
FastAPI runs them on its thread pool, so the registry's database never holds up the event loop.
Bodies carrying passwords are never echoed nor logged (the audit log records no bodies).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from modelyard.errors import Forbidden, InvalidInput, NotFound
from modelyard.registry import Project, ProjectRole
from modelyard.web.access import Caller, On, Right, requires
from modelyard.web.jsonable import jsonable
from modelyard.web.services import Services, ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["people"])

SignedIn = Annotated[Caller, Depends(requires(Right.SIGNED_IN))]
ServerAdmin = Annotated[Caller, Depends(requires(Right.SERVER))]
Reader = Annotated[Caller, Depends(requires(Right.READ, On.PROJECT))]
Manager = Annotated[Caller, Depends(requires(Right.MANAGE, On.PROJECT))]

KINDS = ("user", "team")
ROLES = tuple(role.value for role in ProjectRole)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="sign-in name, unique on the server")
    email: str | None = None
    admin: bool = Field(default=False, description="a server admin: everything, everywhere")
    password: str | None = Field(default=None, description="8 characters or more; or set later")


class NewPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(description="8 characters or more")


class OwnPassword(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current: str = Field(description="the password in use now")
    password: str = Field(description="the new password, 8 characters or more")


class NewTeam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class NewProject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="unique among the owner's projects")
    description: str = ""
    owner: str | None = Field(default=None, description="a user name (default: the caller)")


class RoleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(description="viewer, operator, contributor or admin")


def project_json(project: Project, caller: Caller | None = None) -> dict[str, Any]:
    """A project as the API shows it: its fields, ``full_name`` (owner/name) and, for a caller,
    their role in it (None for a server admin without one)."""
    shown: dict[str, Any] = jsonable(project)
    shown["full_name"] = project.full_name
    if caller is not None:
        role = caller.role_in(project.crn)
        shown["role"] = None if role is None else role.value
    return shown


def _role(text: str) -> ProjectRole:
    if text not in ROLES:
        raise InvalidInput(f"role {text!r} is not a project role; accepted: {', '.join(ROLES)}")
    return ProjectRole(text)


def _kind(text: str) -> str:
    if text not in KINDS:
        raise InvalidInput(
            f"collaborator kind {text!r} is not known; accepted: {', '.join(KINDS)} "
            "(a user or a team is given a role in a project)"
        )
    return text


def _target(caller: Caller) -> str:
    """The project the rule resolved from the path (set by ``requires``)."""
    if caller.project_crn is None:  # the dependency always sets it for On.PROJECT
        raise NotFound("the project of this request could not be resolved")
    return caller.project_crn


# -- who is calling ----------------------------------------------------------------------------


@router.get("/me", summary="The caller: user, server-admin flag, key narrowing, projects")
def me(services: ServicesDep, caller: SignedIn) -> dict[str, Any]:
    people = services.registry.people
    projects = []
    for crn, role in sorted(caller.roles.items()):
        try:
            found = people.get_project(crn)
        except NotFound:  # deleted a moment ago
            continue
        projects.append({**project_json(found), "role": role.value})
    key = caller.key
    narrowing = None
    if key is not None:
        narrowing = {
            "id": key.id,
            "name": key.name,
            "role": key.role.value,
            "project_crn": key.project_crn,
            "project_role": None if key.project_role is None else key.project_role.value,
            "scope": key.scope,
        }
    return {
        "user": jsonable(caller.user),
        "server_admin": caller.server_admin,
        "key": narrowing,
        "projects": projects,
    }


@router.put("/me/password", status_code=204, summary="Change your own password")
def change_own_password(body: OwnPassword, services: ServicesDep, caller: SignedIn) -> Response:
    if caller.user is None:
        raise Forbidden(
            f"{caller.actor} is not a user and has no password; sign in as a user or use a "
            "key that belongs to one"
        )
    people = services.registry.people
    people.sign_in(caller.user.name, body.current)  # Unauthorized when it is not the current one
    people.set_password(caller.user.name, body.password)
    return Response(status_code=204)


# -- users (server admins) ---------------------------------------------------------------------


@router.post("/users", status_code=201, summary="Create a user (server admins)")
def create_user(body: NewUser, services: ServicesDep, caller: ServerAdmin) -> dict[str, Any]:
    user = services.registry.people.create_user(
        body.name, email=body.email, admin=body.admin, password=body.password
    )
    return {"user": jsonable(user)}


@router.get("/users", summary="Every user (server admins)")
def list_users(services: ServicesDep, caller: ServerAdmin) -> dict[str, Any]:
    return {"users": jsonable(services.registry.people.list_users())}


@router.post("/users/{name}/disable", summary="Disable a user: sessions and keys stop at once")
def disable_user(name: str, services: ServicesDep, caller: ServerAdmin) -> dict[str, Any]:
    if caller.user is not None and name in (caller.user.name, caller.user.id):
        raise InvalidInput(
            f"user {name!r} is you; a server admin may not disable themself (another server "
            "admin can)"
        )
    return {"user": jsonable(services.registry.people.set_disabled(name, True))}


@router.post("/users/{name}/enable", summary="Enable a disabled user again")
def enable_user(name: str, services: ServicesDep, caller: ServerAdmin) -> dict[str, Any]:
    return {"user": jsonable(services.registry.people.set_disabled(name, False))}


@router.put("/users/{name}/password", status_code=204, summary="Set a user's password")
def set_password(
    name: str, body: NewPassword, services: ServicesDep, caller: ServerAdmin
) -> Response:
    services.registry.people.set_password(name, body.password)
    return Response(status_code=204)


# -- teams ---------------------------------------------------------------------------------------


@router.post("/teams", status_code=201, summary="Create a team (server admins)")
def create_team(body: NewTeam, services: ServicesDep, caller: ServerAdmin) -> dict[str, Any]:
    return {"team": jsonable(services.registry.people.create_team(body.name))}


@router.get("/teams", summary="Every team with its members")
def list_teams(services: ServicesDep, caller: SignedIn) -> dict[str, Any]:
    return {"teams": jsonable(services.registry.people.list_teams())}


@router.delete("/teams/{team}", summary="Delete a team (server admins)")
def delete_team(team: str, services: ServicesDep, caller: ServerAdmin) -> dict[str, Any]:
    services.registry.people.delete_team(team)
    return {"deleted": team}


@router.put("/teams/{team}/members/{user}", summary="Add a user to a team (server admins)")
def add_member(team: str, user: str, services: ServicesDep, caller: ServerAdmin) -> dict[str, Any]:
    return {"team": jsonable(services.registry.people.add_member(team, user))}


@router.delete("/teams/{team}/members/{user}", summary="Remove a user from a team")
def remove_member(
    team: str, user: str, services: ServicesDep, caller: ServerAdmin
) -> dict[str, Any]:
    return {"team": jsonable(services.registry.people.remove_member(team, user))}


# -- projects ------------------------------------------------------------------------------------


@router.post("/projects", status_code=201, summary="Create a project (owned by you by default)")
def create_project(body: NewProject, services: ServicesDep, caller: SignedIn) -> dict[str, Any]:
    mine = None if caller.user is None else caller.user.name
    owner = body.owner or mine
    if owner is None:
        raise InvalidInput(
            f"{caller.actor} is not a user, so a project needs an owner; give owner=<user name>"
        )
    if owner != mine and not caller.server_admin:
        raise Forbidden(
            f"user {mine!r} may create projects owned by themself only, not by {owner!r}; "
            "leave out owner, or ask a server admin"
        )
    _check_unnarrowed(caller)
    project = services.registry.people.create_project(
        body.name, owner=owner, description=body.description
    )
    # The caller's roles were read before the project existed: its owner (or a server admin)
    # is its admin.
    return {"project": {**project_json(project), "role": ProjectRole.ADMIN.value}}


def _check_unnarrowed(caller: Caller) -> None:
    """A key narrowed to one project, one model or a role below admin may not create projects:
    it could not reach the new one, and narrowing only ever takes rights away."""
    key = caller.key
    if key is None or caller.server_admin:
        return
    capped = key.project_role is not None and key.project_role is not ProjectRole.ADMIN
    if key.project_crn is None and key.scope is None and not capped:
        return
    limits = [
        f"project {key.project_crn!r}" if key.project_crn else "",
        f"model {key.scope!r}" if key.scope else "",
        f"role {key.project_role.value!r}" if capped and key.project_role else "",
    ]
    raise Forbidden(
        f"API key {key.id!r} is narrowed to {', '.join(x for x in limits if x)}, so it may not "
        "create projects; use a key of yours that is not narrowed, or the dashboard",
        key_id=key.id,
    )


@router.get("/projects", summary="The projects you can see (server admins: all)")
def list_projects(
    services: ServicesDep,
    caller: SignedIn,
    name: Annotated[
        str | None,
        Query(description="only this project: a name, owner/name, its uuid or its CRN"),
    ] = None,
) -> dict[str, Any]:
    visible = caller.visible_projects()
    found = [
        p
        for p in services.registry.people.list_projects()
        if (visible is None or p.crn in visible) and _matches(p, name)
    ]
    return {"projects": [project_json(p, caller) for p in found]}


def _matches(project: Project, ref: str | None) -> bool:
    """Whether ``project`` is one the ``?name=`` filter names (a bare name matches every
    project of that name: the list shows the ``owner/name`` of each)."""
    if ref is None:
        return True
    return ref in (project.name, project.full_name, project.crn, project.crn.rsplit("/", 1)[-1])


def _project_view(services: Services, caller: Caller, crn: str) -> dict[str, Any]:
    registry = services.registry
    project = registry.people.get_project(crn)
    return {
        "project": project_json(project, caller),
        "collaborators": jsonable(registry.people.collaborators(crn)),
        "models": sorted(m.name for m in registry.list_models(crn)),
        "jobs": sorted(j.name for j in registry.list_jobs(crn)),
    }


@router.get("/projects/{project}", summary="A project: collaborators, models and jobs")
def show_project(project: str, services: ServicesDep, caller: Reader) -> dict[str, Any]:
    return _project_view(services, caller, _target(caller))


@router.delete("/projects/{project}", summary="Delete a project (it must own no models or jobs)")
def delete_project(project: str, services: ServicesDep, caller: Manager) -> dict[str, Any]:
    crn = _target(caller)
    people = services.registry.people
    full_name = people.get_project(crn).full_name
    people.delete_project(crn)
    return {"deleted": full_name, "crn": crn}


@router.get("/projects/{project}/collaborators", summary="Who has which role in a project")
def collaborators(project: str, services: ServicesDep, caller: Reader) -> dict[str, Any]:
    found = services.registry.people.collaborators(_target(caller))
    return {"collaborators": jsonable(found)}


@router.put(
    "/projects/{project}/collaborators/{kind}/{name}",
    summary="Give a user or a team a role in a project (project admins)",
)
def share(
    project: str, kind: str, name: str, body: RoleBody, services: ServicesDep, caller: Manager
) -> dict[str, Any]:
    found = services.registry.people.set_collaborator(
        _target(caller), _kind(kind), name, _role(body.role)
    )
    return {"collaborator": jsonable(found)}


@router.delete(
    "/projects/{project}/collaborators/{kind}/{name}",
    summary="Take a user's or a team's role away (never the last admin)",
)
def unshare(
    project: str, kind: str, name: str, services: ServicesDep, caller: Manager
) -> dict[str, Any]:
    crn = _target(caller)
    services.registry.people.remove_collaborator(crn, _kind(kind), name)
    return {"removed": {"project_crn": crn, "kind": kind, "name": name}}
