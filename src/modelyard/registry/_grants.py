"""Whose rights a new API key carries, and how far it is narrowed: checked when it is minted.

``admin`` keys act with all their user's rights, so only a server admin may hold one, and they
are never narrowed. ``user`` keys act with their user's project roles, optionally narrowed to one
project (which the user must have a role in) and to a project role (at most the user's own role
there). ``run`` keys belong to no user: the server mints them for a deployment or a job run.
Before any user exists (a registry used without people, or a home before its first start on
schema version 9) admin and user keys may have no user; ``people.bootstrap`` gives them one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from modelyard.errors import InvalidInput
from modelyard.registry._db import Cursor, Db
from modelyard.registry._projects import check_project_role, find_project, roles_of
from modelyard.registry._records import ProjectRole, Role, User
from modelyard.registry._users import find_user

__all__ = ["Grant", "check_grant"]


@dataclass(frozen=True, slots=True)
class Grant:
    """What a key stores besides its name and scope."""

    user_id: str | None
    project_crn: str | None
    project_role: ProjectRole | None


def _project_names(db: Db, cur: Cursor, crns: Collection[str]) -> str:
    rows = db.exec(
        cur,
        "SELECT p.crn, u.name, p.name FROM projects p JOIN users u ON u.id = p.owner_id "
        "ORDER BY u.name, p.name",
    ).fetchall()
    names = [f"{row[1]}/{row[2]}" for row in rows if row[0] in crns]
    return ", ".join(names) or "none (a project admin must add them first)"


def _model_project(db: Db, cur: Cursor, model_crn: str) -> str | None:
    row = db.exec(cur, "SELECT project_crn FROM models WHERE crn = ?", (model_crn,)).fetchone()
    return None if row is None else row[0]


def check_grant(
    db: Db,
    cur: Cursor,
    role: Role,
    scope: str | None,
    user: str | None,
    project: str | None,
    project_role: str | None,
) -> Grant:
    """The checked grant of a key being minted inside transaction ``cur``; InvalidInput (or
    NotFound for an unknown user or project) naming the value and what is accepted."""
    if role is Role.RUN:
        if user is not None or project_role is not None:
            raise InvalidInput(
                f"a run key has no user and no project role (given user={user!r}, "
                f"project_role={project_role!r}); the server mints run keys for a deployment or "
                "a job run, and they act as operator on their own project only; accepted: "
                "user=None, project_role=None",
                argument="user" if user is not None else "project_role",
            )
        if project is not None:
            return Grant(None, find_project(db, cur, project).crn, None)
        model_project = None if scope is None else _model_project(db, cur, scope)
        return Grant(None, model_project, None)
    if user is None:
        return _no_user(db, cur, role, project, project_role)
    owner = find_user(db, cur, user)
    if owner.disabled_ms is not None:
        raise InvalidInput(
            f"user {owner.name!r} is disabled, so a key for them would not work; enable them "
            "first or name another user",
            argument="user",
        )
    if role is Role.ADMIN:
        return _admin_grant(owner, project, project_role)
    return _user_grant(db, cur, owner, scope, project, project_role)


def _no_user(
    db: Db, cur: Cursor, role: Role, project: str | None, project_role: str | None
) -> Grant:
    if db.exec(cur, "SELECT 1 FROM users LIMIT 1").fetchone() is not None:
        raise InvalidInput(
            f"user=None is not accepted for a {role.value!r} key: every admin or user key "
            "belongs to a user and acts with their rights; accepted: the name of an existing "
            "user (e.g. user='admin')",
            argument="user",
        )
    if project is not None or project_role is not None:
        raise InvalidInput(
            f"project={project!r} / project_role={project_role!r} narrow a user's rights, and "
            "no user is given (none exists yet); accepted: no project and no project_role",
            argument="project" if project is not None else "project_role",
        )
    return Grant(None, None, None)


def _admin_grant(owner: User, project: str | None, project_role: str | None) -> Grant:
    if not owner.is_admin:
        raise InvalidInput(
            f"an 'admin' key acts with all its user's rights including a server admin's, and "
            f"user {owner.name!r} is not a server admin; accepted for them: role 'user' "
            "(optionally narrowed to a project and a project role)",
            argument="role",
        )
    if project is not None or project_role is not None:
        raise InvalidInput(
            f"an 'admin' key is never narrowed (given project={project!r}, "
            f"project_role={project_role!r}); accepted: a 'user' key for a narrowed key, or "
            "an admin key without project and project_role",
            argument="project" if project is not None else "project_role",
        )
    return Grant(owner.id, None, None)


def _user_grant(
    db: Db,
    cur: Cursor,
    owner: User,
    scope: str | None,
    project: str | None,
    project_role: str | None,
) -> Grant:
    roles = roles_of(db, cur, owner.id)
    crn = None
    if project is not None:
        visible = None if owner.is_admin else set(roles)
        crn = find_project(db, cur, project, visible=visible).crn
        if not owner.is_admin and crn not in roles:
            raise InvalidInput(
                f"user {owner.name!r} has no role in project {project!r}, so a key narrowed to "
                f"it could do nothing; accepted: one of their projects: "
                f"{_project_names(db, cur, roles)}",
                argument="project",
            )
    chosen = None if project_role is None else check_project_role(project_role, "project_role")
    if chosen is not None and crn is not None and not owner.is_admin:
        own = roles[crn]
        if chosen.rank > own.rank:
            raise InvalidInput(
                f"project_role={chosen.value!r} is above user {owner.name!r}'s own role "
                f"{own.value!r} in project {project!r}; a key acts with at most its user's "
                f"rights; accepted: "
                f"{', '.join(r.value for r in ProjectRole if r.rank <= own.rank)}",
                argument="project_role",
            )
    if scope is not None:
        _check_model_scope(db, cur, owner, roles, scope, crn)
    return Grant(owner.id, crn, chosen)


def _check_model_scope(
    db: Db,
    cur: Cursor,
    owner: User,
    roles: Mapping[str, ProjectRole],
    scope: str,
    crn: str | None,
) -> None:
    model_project = _model_project(db, cur, scope)
    if crn is not None and model_project != crn:
        raise InvalidInput(
            f"scope={scope!r} names a model of another project than project {crn!r}; accepted: "
            "a model of the key's project, or no project (the model's project applies)",
            argument="scope",
        )
    if not owner.is_admin and model_project not in roles:
        raise InvalidInput(
            f"scope={scope!r} names a model in a project where user {owner.name!r} has no "
            "role; accepted: a model of one of their projects",
            argument="scope",
        )
