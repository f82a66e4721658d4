"""Who is calling and what they may do: users, their project roles, and the keys that carry them.

Every REST route, the predict path and the dashboard decide here, so they never disagree.

- A human API key (role ``admin`` or ``user``) belongs to a user and acts with that user's
  project roles (``people.project_roles``: the highest of their own collaborator row, their
  teams' rows, and ownership). Only an ``admin`` key of a server administrator acts as server
  administrator (everything, everywhere); a ``user`` key never does. A key may be narrowed to one
  project (``project_crn``), one model (``scope``: a model CRN) and a role (``project_role``):
  the narrowing only ever removes rights.
- A ``run`` key belongs to no user: the server mints one per deployment (``scope`` = the model
  CRN) and one per job run (``scope`` = the run CRN). It is an operator of that model's, or that
  run's job's, project, only on routes marked ``run_keys=True`` (metrics and monitor routes, its
  own run); a deployment's key reaches its own model only.
- Rights: READ, OPERATE, CHANGE, MANAGE need viewer, operator, contributor, admin in the target's
  project; SERVER needs a server administrator; SIGNED_IN any human (not a run key).
- Naming an object in a project where the caller has no role at all answers 404 with the
  message an unknown name gets (existence never leaks); a role too low answers 403 naming the
  caller, their role, the project, what was asked and the role it needs.

Cost: ``caller_of_key`` is cached per key for ``CALLER_TTL_S`` (1 s) and dropped at once when
people, teams or roles change in this process (``people.generation``); the predict
path (``caller_on_loop``) answers from the caches and reads the database only on a miss, on a
worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace

from starlette.requests import Request

from modelyard.errors import Forbidden, InvalidInput, NotFound, StoreUnavailable, Unauthorized
from modelyard.registry import (
    RUN_SCOPE_PREFIX,
    ApiKey,
    People,
    Project,
    ProjectRole,
    Registry,
    Role,
    User,
)
from modelyard.ttlcache import TTLCache
from modelyard.web.caller import (
    CALLER_TTL_S,
    NEEDED,
    Caller,
    On,
    Right,
    Rule,
    SessionCaller,
    bearer_token,
    not_found,
)
from modelyard.web.services import services_of

__all__ = [
    "CALLER_TTL_S",
    "NEEDED",
    "Caller",
    "On",
    "Right",
    "Rule",
    "SessionCaller",
    "bearer_token",
    "caller_of_key",
    "caller_on_loop",
    "forget_callers",
    "not_found",
    "project_name",
    "requires",
    "resolve_project",
]


_NO_KEY = (
    "this route needs an API key; send 'Authorization: Bearer <API key>' (create one with "
    "'modelyard keys create')"
)


# -- resolving a key into a Caller --------------------------------------------------------------
class _Resolver:
    """One registry's cache of Callers by key id, dropped whenever people change."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.people = registry.people
        self.callers: TTLCache[Caller] = TTLCache(CALLER_TTL_S)
        self.seen = -1

    def _people_generation(self) -> int:
        return self.people.generation()

    def peek(self, key: ApiKey) -> Caller | None:
        """The cached Caller of ``key``, or None when resolving it needs the database."""
        if self._people_generation() != self.seen:
            return None
        return self.callers.get(key.id)

    def resolve(self, key: ApiKey) -> Caller:
        generation = self._people_generation()
        if generation != self.seen:
            self.callers.clear()
            self.seen = generation
        mine = self.callers.generation()
        caller = self.callers.get(key.id)
        if caller is None:
            caller = _resolve(self.registry, key)
            self.callers.put(key.id, caller, mine)
        return caller


_LOCK = threading.Lock()


def _resolver(registry: Registry) -> _Resolver:
    """The registry's resolver, kept on the registry itself (it lives and dies with it)."""
    found: _Resolver | None = getattr(registry, "_access_resolver", None)
    if found is None:
        with _LOCK:
            found = getattr(registry, "_access_resolver", None)
            if found is None:
                found = _Resolver(registry)
                registry._access_resolver = found  # type: ignore[attr-defined]
    return found


def forget_callers(registry: Registry) -> None:
    """Drop every cached Caller of ``registry`` (after a change this module cannot see)."""
    _resolver(registry).callers.clear()


def caller_of_key(registry: Registry, key: ApiKey) -> Caller:
    """The Caller ``key`` stands for (cached; blocking on a miss: registry reads).

    Unauthorized when the key belongs to no user (a human key made before users existed and
    not yet given one: the server's start gives it one) or its user is disabled or gone."""
    return _resolver(registry).resolve(key)


async def caller_on_loop(registry: Registry, authorization: str | None) -> Caller:
    """``caller_of_key`` for the event loop (the predict path): the key and its Caller from the
    caches when they can answer, else resolved on a worker thread."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized(_NO_KEY)
    key = registry.cached_api_key(token)
    if key is not None:
        caller = _resolver(registry).peek(key)
        if caller is not None:
            return caller
    return await asyncio.to_thread(_caller_of_token, registry, token)


def _caller_of_token(registry: Registry, token: str) -> Caller:
    return caller_of_key(registry, registry.authenticate(token))


def _people(registry: Registry) -> People:
    return registry.people


def project_name(registry: Registry, project_crn: str) -> str:
    """``owner/name`` of a project for messages (its CRN if it cannot be read)."""
    try:
        project: Project = _people(registry).get_project(project_crn)
    except (NotFound, StoreUnavailable):
        return project_crn
    return project.full_name


def _resolve(registry: Registry, key: ApiKey) -> Caller:
    def shown(crn: str) -> str:
        return project_name(registry, crn)

    if key.role is Role.RUN:
        return replace(_run_caller(registry, key), names=shown)
    if key.user_id is None:
        raise Unauthorized(
            f"API key {key.id} ({key.name!r}) belongs to no user (it was made before users "
            "existed); restart the server once to give it one, or use a key made with "
            "'modelyard keys create'",
            key_id=key.id,
        )
    people = _people(registry)
    try:
        user: User = people.user_by_id(key.user_id)
    except NotFound:
        raise Unauthorized(
            f"API key {key.id} ({key.name!r}) belongs to a user who no longer exists; ask an "
            "admin for a new key",
            key_id=key.id,
        ) from None
    if user.disabled_ms is not None:
        raise Unauthorized(
            f"user {user.name!r} is disabled, so API key {key.id} ({key.name!r}) no longer "
            "works; ask a server administrator to enable the user",
            key_id=key.id,
            user=user.name,
        )
    admin_key = key.role is Role.ADMIN and user.is_admin
    narrowed = key.project_crn is not None or key.project_role is not None or key.scope is not None
    base: dict[str, ProjectRole] = dict(people.project_roles(user.id))
    if admin_key and narrowed and key.project_crn is not None:
        base[key.project_crn] = ProjectRole.ADMIN  # a server administrator: admin everywhere
    roles = _narrow(base, key)
    return Caller(
        key=key,
        user=user,
        server_admin=admin_key and not narrowed,
        roles=roles,
        model_scope=key.scope,
        actor=user.name,
        names=shown,
    )


def _narrow(roles: Mapping[str, ProjectRole], key: ApiKey) -> dict[str, ProjectRole]:
    """``roles`` as ``key`` narrows them: one project, and at most ``project_role``."""
    kept = dict(roles)
    if key.project_crn is not None:
        kept = {key.project_crn: kept[key.project_crn]} if key.project_crn in kept else {}
    cap = key.project_role
    if cap is not None:
        kept = {crn: role if role.rank <= cap.rank else cap for crn, role in kept.items()}
    return kept


def _run_caller(registry: Registry, key: ApiKey) -> Caller:
    """A run key: operator of its deployment's model's project, or of its run's job's."""
    actor = f"key:{key.id}"
    scope = key.scope
    if scope is None:  # a server-wide replica key of an older release: reaches nothing
        return Caller(key=key, user=None, server_admin=False, roles={}, actor=actor)
    if scope.startswith(RUN_SCOPE_PREFIX):
        try:
            run = registry.get_run(scope)
            job = registry.get_job(run.job_id)
        except NotFound:
            return Caller(key, None, False, {}, actor=actor, run_crn=scope)
        project: str | None = getattr(job, "project_crn", None)
        roles = {project: ProjectRole.OPERATOR} if project else {}
        return Caller(key, None, False, roles, actor=actor, run_crn=scope, job_id=job.id)
    try:
        model = registry.get_model(scope)
    except NotFound:
        return Caller(key, None, False, {}, model_scope=scope, actor=actor)
    roles = {model.project_crn: ProjectRole.OPERATOR} if model.project_crn else {}
    return Caller(key, None, False, roles, model_scope=scope, actor=actor)


# -- the FastAPI dependency ---------------------------------------------------------------------
def _authenticated(request: Request, registry: Registry) -> Caller:
    """The request's Caller: a bearer key, else the dashboard session's."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        session_caller: SessionCaller | None = getattr(request.app.state, "session_caller", None)
        if session_caller is not None:
            caller = session_caller(request)
            if caller is not None:
                return caller
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized(_NO_KEY)
    return caller_of_key(registry, registry.authenticate(token))


def resolve_project(registry: Registry, caller: Caller, ref: str | None) -> Project:
    """The project ``ref`` names (None: the default project) among those ``caller`` sees; the
    same 404 for an unknown project and for one the caller has no role in."""
    people = _people(registry)
    if ref is None:
        project: Project = people.default_project()
        return project
    try:
        project = people.get_project(ref, visible=caller.visible_projects())
    except NotFound:
        raise not_found("project", ref) from None
    if caller.role_in(project.crn) is None:
        raise not_found("project", ref)
    return project


def _target(request: Request, registry: Registry, caller: Caller, rule: Rule) -> Caller:
    """Check ``rule`` on the request's target; the Caller with ``project_crn`` set."""
    on, right = rule.on, rule.right
    params = request.path_params
    if on is On.NONE or on is On.BODY:
        if right in (Right.SERVER, Right.SIGNED_IN):
            caller.check(right, None, f"route {request.url.path!r}")
        return caller
    if on in (On.MODEL, On.MODEL_OR_CREATE):
        name = str(params["name"])
        try:
            model = services_of(request).models.get(name)
        except NotFound:
            if on is On.MODEL:
                raise not_found("model", name) from None
            project = resolve_project(registry, caller, request.query_params.get("project"))
            caller.check(right, project.crn, f"new model {name!r}")
            return replace(caller, project_crn=project.crn)
        caller.check(right, model.project_crn, f"model {name!r}", model.crn)
        asked = request.query_params.get("project") if on is On.MODEL_OR_CREATE else None
        if asked is not None:
            _same_project(registry, caller, name, model.project_crn, asked)
        return replace(caller, project_crn=model.project_crn)
    if on in (On.JOB, On.RUN):
        return _job_target(request, registry, caller, rule)
    ref = str(params["project"]) if on is On.PROJECT else request.query_params.get("project")
    project = resolve_project(registry, caller, ref)
    caller.check(right, project.crn, f"project {project.full_name!r}")
    return replace(caller, project_crn=project.crn)


def _same_project(
    registry: Registry, caller: Caller, name: str, project_crn: str | None, asked: str
) -> None:
    """A deploy of an existing model that names a project: it must be the model's own (models
    do not move between projects by deploying)."""
    project = resolve_project(registry, caller, asked)
    if project.crn != project_crn:
        shown = project_name(registry, project_crn) if project_crn else "none"
        raise InvalidInput(
            f"model {name!r} belongs to project {shown!r}, not {project.full_name!r}; "
            f"accepted: ?project={shown} or no ?project= (a new model's name is needed to "
            "deploy into another project)",
            argument="project",
        )


def _job_target(request: Request, registry: Registry, caller: Caller, rule: Rule) -> Caller:
    """On.JOB / On.RUN: the job's project; a run key only its own job and run."""
    params = request.path_params
    if rule.on is On.RUN:
        ref = str(params["run_id"])
        try:
            run = registry.get_run(registry.resolve_run(ref))
            job = registry.get_job(run.job_id)
        except NotFound:
            raise not_found("run", ref) from None
        except InvalidInput:
            if caller.server_admin:
                raise  # the registry's answer lists the candidates: every run is theirs to see
            # The candidates may be runs of projects the caller has no role in: not listed.
            raise InvalidInput(
                f"run {ref!r} names no single run (a prefix needs 4 characters or more and must "
                "start only one run's uuid); accepted: the run's whole uuid, or a longer prefix",
                argument="run_id",
            ) from None
        what = f"run {ref!r}"
        own = caller.run_crn is None or caller.run_crn == run.id
    else:
        ref = str(params["name"])
        try:
            job = registry.get_job(ref)
        except NotFound:
            raise not_found("job", ref) from None
        if getattr(job, "kind", "job") != "job":  # an experiment's job: not one of the jobs API
            raise not_found("job", ref)
        what = f"job {ref!r}"
        own = caller.job_id is None or caller.job_id == job.id
    project: str | None = getattr(job, "project_crn", None)
    if not own:
        kind, _, _ = what.partition(" ")
        raise not_found(kind, ref)
    caller.check(rule.right, project, what)
    return replace(caller, project_crn=project)


def requires(
    right: Right, on: On = On.NONE, *, run_keys: bool = False
) -> Callable[[Request], Caller]:
    """A FastAPI dependency: the Caller, checked for ``right`` on the target ``on`` names.

    A plain ``def`` on purpose: FastAPI runs it on its worker threads, so a cache miss (a
    registry read) never holds up the event loop the model gateway shares. Sets
    ``request.state.caller`` (the audit log reads it) and carries ``.rule``: the
    authorization-matrix test walks every route and fails on one without a rule."""
    rule = Rule(right, on, run_keys)

    def dependency(request: Request) -> Caller:
        registry = services_of(request).registry
        caller = _authenticated(request, registry)
        request.state.caller = caller
        if caller.is_run_key and not rule.run_keys:
            assert caller.key is not None
            raise Forbidden(
                f"run key {caller.key.id!r} (a deployment's or a job run's own key) may not use "
                f"{request.method} {request.url.path}; run keys reach only metrics and monitor "
                "routes and their own run: use a user's API key",
                key_id=caller.key.id,
            )
        caller = _target(request, registry, caller, rule)
        request.state.caller = caller
        return caller

    dependency.__name__ = f"requires_{right.value}_on_{on.value}"
    dependency.rule = rule  # type: ignore[attr-defined]
    return dependency
