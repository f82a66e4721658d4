"""The words of access control: rights, where a route's target comes from, a route's rule, and
the ``Caller`` (who is calling, with their effective project roles) whose ``check`` answers 404 or
403. ``modelyard.web.access`` resolves keys into Callers and checks routes; it re-exports all of
this, so other parts import from there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from starlette.requests import Request

from modelyard.errors import Forbidden, NotFound, Unauthorized
from modelyard.registry import ApiKey, Model, ProjectRole, Role, User

__all__ = [
    "CALLER_TTL_S",
    "NEEDED",
    "Caller",
    "On",
    "Right",
    "Rule",
    "SessionCaller",
    "bearer_token",
    "not_found",
]


class Right(StrEnum):
    """What a route does; see the module docstring for who may."""

    READ = "read"
    OPERATE = "operate"
    CHANGE = "change"
    MANAGE = "manage"
    SERVER = "server"
    SIGNED_IN = "signed_in"


class On(StrEnum):
    """Where a route's target project comes from."""

    NONE = "none"  # no target: lists filter with caller.sees_model / visible_projects()
    MODEL = "model"  # path {name}: the model's project
    MODEL_OR_CREATE = "model_or_create"  # deploy: the model's, or ?project= if it is new
    JOB = "job"  # path {name}: the job's project
    RUN = "run"  # path {run_id}: the run's job's project
    PROJECT = "project"  # path {project}
    QUERY_PROJECT = "query_project"  # ?project= (default project when omitted)
    BODY = "body"  # the handler checks what its body names with caller.check(...)


CALLER_TTL_S = 1.0
"""How long a resolved Caller is kept. People's own caches keep users and roles 2 s
(``DEFAULT_TTL_S``), so a change made through another server on the same database (a user
disabled, a role changed) reaches this one within 3 s; in this process it takes effect at once."""

NEEDED: Mapping[Right, ProjectRole] = {
    Right.READ: ProjectRole.VIEWER,
    Right.OPERATE: ProjectRole.OPERATOR,
    Right.CHANGE: ProjectRole.CONTRIBUTOR,
    Right.MANAGE: ProjectRole.ADMIN,
}
"""The least project role each project right needs."""

_DOING = {
    Right.READ: "reading",
    Right.OPERATE: "operating",  # calling models, running jobs, writing metrics, acknowledging
    Right.CHANGE: "changing",
    Right.MANAGE: "managing",
    Right.SERVER: "using",
    Right.SIGNED_IN: "using",
}


@dataclass(frozen=True, slots=True)
class Rule:
    """What a route needs: carried by its ``requires`` dependency as ``.rule``."""

    right: Right
    on: On = On.NONE
    run_keys: bool = False


def not_found(kind: str, ref: str) -> NotFound:
    """The one answer for an unknown object and for one the caller may not know exists."""
    return NotFound(
        f"{kind} {ref!r} is not known, or not in a project you can see; 'modelyard {kind}s "
        "list' shows those you can see",
        **{kind: ref},
    )


@dataclass(frozen=True)
class Caller:
    """Who is calling, with their effective project roles (after the key's narrowing)."""

    key: ApiKey | None
    user: User | None
    server_admin: bool
    roles: Mapping[str, ProjectRole]
    model_scope: str | None = None  # limited to this model CRN
    project_crn: str | None = None  # the rule's target project, once resolved
    actor: str = "anonymous"  # user name, or "key:<id>" for run keys
    run_crn: str | None = None  # a job run's key: its run
    job_id: str | None = None  # a job run's key: its run's job
    names: Callable[[str], str] | None = field(default=None, repr=False, compare=False)

    @property
    def is_run_key(self) -> bool:
        return self.key is not None and self.key.role is Role.RUN

    def role_in(self, project_crn: str | None) -> ProjectRole | None:
        """The caller's role in ``project_crn`` (None: none at all)."""
        if self.server_admin:
            return ProjectRole.ADMIN
        if project_crn is None:
            return None
        return self.roles.get(project_crn)

    def may(self, right: Right, project_crn: str | None, model_crn: str | None = None) -> bool:
        """Whether the caller has ``right`` on ``project_crn`` (and on ``model_crn`` when the
        object is a model or belongs to one; None: a project-wide object)."""
        if right is Right.SERVER:
            return self.server_admin
        if right is Right.SIGNED_IN:
            return self.user is not None
        if self.model_scope is not None and model_crn != self.model_scope:
            return False
        role = self.role_in(project_crn)
        return role is not None and role.rank >= NEEDED[right].rank

    def check(
        self,
        right: Right,
        project_crn: str | None,
        what: str,
        model_crn: str | None = None,
        *,
        doing: str | None = None,
    ) -> None:
        """Nothing when ``may``; else 404 (``not_found``) if the caller may not know the object
        exists (no role in its project, or a key limited to another model), 403 for a key
        limited to a model and an object of no single model (``model_crn`` None), else 403
        naming the caller, their role, the project and the role ``what`` needs. ``what`` names
        the object as ``"<kind> '<name>'"`` (the 404 reuses it), e.g. ``model 'churn'``;
        ``doing`` the action (default: the right's verb, such as "changing")."""
        if self.may(right, project_crn, model_crn):
            return
        verb = doing or _DOING[right]
        if right is Right.SERVER:
            raise Forbidden(
                f"{self.who} is not a server administrator; {verb} {what} needs a server "
                "administrator's admin key",
                right=right.value,
            )
        if right is Right.SIGNED_IN:
            raise Forbidden(
                f"{self.who} is a run key, which belongs to no user; {what} needs a user's key",
                right=right.value,
            )
        role = self.role_in(project_crn)
        limited = self.model_scope is not None and model_crn != self.model_scope
        if role is None or (limited and model_crn is not None):  # existence must not leak
            kind, _, ref = what.partition(" ")
            raise not_found(kind, ref.strip("'") or what)
        if limited:
            raise Forbidden(
                f"{self.who} calls with a key limited to model {self.model_scope!r}, and "
                f"{what} belongs to no single model; use a key that is not limited to a model",
                right=right.value,
                scope=self.model_scope,
            )
        shown = self.names(project_crn) if self.names and project_crn else project_crn
        raise Forbidden(
            f"{self.who} is {role.value} in project {shown!r}{self._narrowed()}; "
            f"{verb} {what} needs {NEEDED[right].value} or higher (right {right.value!r})",
            right=right.value,
            role=role.value,
            needed=NEEDED[right].value,
        )

    @property
    def who(self) -> str:
        if self.user is not None:
            return f"user {self.user.name!r}"
        if self.key is not None:
            return f"run key {self.key.id!r}"
        return "an anonymous caller"

    def _narrowed(self) -> str:
        key = self.key
        if key is None or self.user is None or key.project_role is None:
            return ""
        return f" (API key {key.id!r} is narrowed to {key.project_role.value})"

    def visible_projects(self) -> frozenset[str] | None:
        """The projects the caller sees anything in (None: all, a server administrator)."""
        return None if self.server_admin else frozenset(self.roles)

    def sees_model(self, model: Model) -> bool:
        """Whether lists show ``model`` to the caller (it may READ it)."""
        return self.may(Right.READ, model.project_crn, model.crn)


SessionCaller = Callable[[Request], Caller | None]
"""``app.state.session_caller``: the Caller of the request's dashboard session (None: none)."""


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
