"""Projects, their collaborators, and a user's role in each project.

A project is owned by a user and named ``owner/name`` (names follow the model-name rule and are
unique per owner); its identifier is ``crn:modelyard:project/<uuid>``. Collaborators are users or
teams with a role (viewer < operator < contributor < admin). A user's role in a project is the
highest of: admin if they own it, their own collaborator row, and the rows of every team they
belong to. Server administrators (``users.is_admin``) are not listed here: the access layer lets
them do everything everywhere.

What "the last admin" means, as enforced: the owner is always an admin of their project and can
be neither removed nor given a lower role (there is no row to change: ``set_collaborator`` and
``remove_collaborator`` refuse the owner). Besides that, a change that would leave a project with
no *enabled* user holding admin (by ownership, their own row or a team's row) is refused; that
can only happen while the owner is disabled. Deleting a team, removing a team member or disabling
a user is not checked (a server admin can always repair a project).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from typing import Any

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.ids import is_uuid
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._records import Collaborator, Project, ProjectRole, User
from modelyard.registry._teams import find_team
from modelyard.registry._users import USER_COLUMNS, find_user, user_of
from modelyard.specs.checks import MODEL_NAME_RULE

__all__ = [
    "BOOTSTRAP_ADMIN",
    "DEFAULT_PROJECT",
    "PROJECT_CRN_PREFIX",
    "Projects",
    "admin_user",
    "check_project_crn",
    "check_project_role",
    "find_default",
    "find_project",
    "new_project_crn",
    "project_names_text",
    "project_shown",
    "roles_of",
]

# What a project must be emptied of before it is deleted: (shown as, query of up to 6 names).
# Experiments are rows of ``jobs`` too (kind 'experiment'), named by their run's uuid, which is
# what 'modelyard experiments delete' takes.
_OWNED = (
    ("model", "SELECT name FROM models WHERE project_crn = ? ORDER BY name LIMIT 6"),
    ("job", "SELECT name FROM jobs WHERE project_crn = ? AND kind = 'job' ORDER BY name LIMIT 6"),
    (
        "experiment run",
        "SELECT r.id FROM job_runs r JOIN jobs j ON j.id = r.job_id "
        "WHERE j.project_crn = ? AND j.kind = 'experiment' ORDER BY r.id LIMIT 6",
    ),
)

PROJECT_CRN_PREFIX = "crn:modelyard:project/"
DEFAULT_PROJECT = "default"
BOOTSTRAP_ADMIN = "admin"
KINDS = ("user", "team")
_SELECT = (
    "SELECT p.crn, p.name, u.name, p.description, p.created_ms "
    "FROM projects p JOIN users u ON u.id = p.owner_id"
)
_MAX_DESCRIPTION = 2000
_HOW_TO_NAME = (
    "name a project by 'owner/name' (e.g. 'admin/default'), by its CRN or uuid, or by its bare "
    "name when only one project you can see has it; 'modelyard projects list' shows them"
)


def new_project_crn() -> str:
    return f"{PROJECT_CRN_PREFIX}{uuid.uuid4()}"


def check_project_crn(project_crn: object) -> str:
    """``project_crn`` if it is a project CRN, else InvalidInput naming it (``argument``
    ``project_crn``): the check of project-scoped registry parts (secrets, connections)."""
    if not isinstance(project_crn, str) or not project_crn.startswith(PROJECT_CRN_PREFIX):
        raise InvalidInput(
            f"project {project_crn!r:.100} is not accepted; expected a project CRN "
            f"'{PROJECT_CRN_PREFIX}<uuid>'",
            argument="project_crn",
        )
    return project_crn


def project_shown(db: Db, cur: Cursor, project_crn: str) -> str:
    """``owner/name`` of the project (NotFound if there is no such project)."""
    row = db.exec(
        cur,
        "SELECT u.name, p.name FROM projects p JOIN users u ON u.id = p.owner_id WHERE p.crn = ?",
        (project_crn,),
    ).fetchone()
    if row is None:
        raise NotFound(
            f"project {project_crn!r} does not exist; 'modelyard projects list' shows them",
            project=project_crn,
        )
    return f"{row[0]}/{row[1]}"


def project_names_text(db: Db, cur: Cursor, table: str, project_crn: str) -> str:
    """What a NotFound says the project has in ``table`` (a project-scoped table with a
    ``name`` column, also the noun): ``its secrets: A, B`` (at most 20) or ``it has no secrets
    yet``."""
    known = [
        str(row[0])
        for row in db.exec(
            cur,
            f"SELECT name FROM {table} WHERE project_crn = ? ORDER BY name LIMIT 21",
            (project_crn,),
        )
    ]
    if not known:
        return f"it has no {table} yet"
    return f"its {table}: {', '.join(known[:20])}{', ...' if len(known) > 20 else ''}"


def _project(row: Any) -> Project:
    return Project(
        crn=row[0], name=row[1], owner=row[2], description=row[3], created_ms=int(row[4])
    )


def check_project_role(role: object, argument: str = "role") -> ProjectRole:
    if isinstance(role, ProjectRole):
        return role
    if isinstance(role, str) and role in {r.value for r in ProjectRole}:
        return ProjectRole(role)
    raise InvalidInput(
        f"{argument}={role!r} is not a project role; accepted: "
        f"{', '.join(r.value for r in ProjectRole)} (each grants what the one before does)",
        argument=argument,
    )


def _check_project_name(name: object) -> str:
    if not isinstance(name, str) or MODEL_NAME_RULE.match(name) is None:
        raise InvalidInput(
            f"project name {name!r} is not accepted; a project name is 1 to 63 characters of "
            "lowercase letters, digits and '-', starting with a letter or digit (rule "
            f"{MODEL_NAME_RULE.pattern}), e.g. 'churn'",
            argument="name",
        )
    return name


def find_project(
    db: Db,
    cur: Cursor,
    ref: object,
    *,
    visible: Collection[str] | None = None,
    lock: bool = False,
) -> Project:
    """The project ``ref`` names: its CRN, its bare uuid, ``owner/name``, or a bare name that
    exactly one project of ``visible`` (project CRNs; None: all) has. NotFound naming ``ref``
    (the same message whether it does not exist or is not visible); InvalidInput listing the
    ``owner/name`` candidates when a bare name is ambiguous."""
    if not isinstance(ref, str) or not ref or len(ref) > 200:
        raise InvalidInput(f"project {ref!r} is not accepted; {_HOW_TO_NAME}", argument="project")
    tail = " FOR UPDATE OF p" if lock and db.dialect == "postgres" else ""
    crn = PROJECT_CRN_PREFIX + ref if is_uuid(ref) else ref
    if crn.startswith(PROJECT_CRN_PREFIX):
        rows = db.exec(cur, f"{_SELECT} WHERE p.crn = ?{tail}", (crn,)).fetchall()
    elif "/" in ref:
        owner, _, name = ref.partition("/")
        rows = db.exec(
            cur, f"{_SELECT} WHERE u.name = ? AND p.name = ?{tail}", (owner, name)
        ).fetchall()
    else:
        rows = db.exec(cur, f"{_SELECT} WHERE p.name = ? ORDER BY u.name{tail}", (ref,)).fetchall()
        if visible is not None:
            allowed = set(visible)
            rows = [row for row in rows if row[0] in allowed]
        if len(rows) > 1:
            candidates = [f"{row[2]}/{row[1]}" for row in rows]
            raise InvalidInput(
                f"project name {ref!r} is ambiguous: {', '.join(candidates)} have it; name one "
                "as owner/name",
                argument="project",
                candidates=candidates,
            )
    if not rows:
        raise NotFound(f"project {ref!r} was not found; {_HOW_TO_NAME}", project=ref)
    return _project(rows[0])


def admin_user(db: Db, cur: Cursor) -> User | None:
    """Who owns the default project: user ``admin``, else the oldest server admin."""
    row = db.exec(
        cur, f"SELECT {USER_COLUMNS} FROM users WHERE name = ?", (BOOTSTRAP_ADMIN,)
    ).fetchone()
    if row is None:
        row = db.exec(
            cur,
            f"SELECT {USER_COLUMNS} FROM users WHERE is_admin = 1 ORDER BY created_ms, id LIMIT 1",
        ).fetchone()
    return None if row is None else user_of(row)


def find_default(db: Db, cur: Cursor) -> Project | None:
    """The default project (where things made without a project go): ``default`` owned by
    ``admin_user``, else the oldest project named ``default``; None before the bootstrap."""
    admin = admin_user(db, cur)
    row = None
    if admin is not None:
        row = db.exec(
            cur, f"{_SELECT} WHERE p.owner_id = ? AND p.name = ?", (admin.id, DEFAULT_PROJECT)
        ).fetchone()
    if row is None:
        row = db.exec(
            cur,
            f"{_SELECT} WHERE p.name = ? ORDER BY p.created_ms, p.crn LIMIT 1",
            (DEFAULT_PROJECT,),
        ).fetchone()
    return None if row is None else _project(row)


def roles_of(db: Db, cur: Cursor, user_id: str) -> dict[str, ProjectRole]:
    """Project CRN -> the user's role there: the highest of owner (admin), their own row and
    their teams' rows. Projects where they have none are absent."""
    roles = {
        row[0]: ProjectRole.ADMIN
        for row in db.exec(
            cur, "SELECT crn FROM projects WHERE owner_id = ?", (user_id,)
        ).fetchall()
    }
    granted = db.exec(
        cur,
        "SELECT project_crn, role FROM collaborators WHERE kind = 'user' AND principal_id = ? "
        "UNION ALL "
        "SELECT c.project_crn, c.role FROM collaborators c JOIN team_members m "
        "ON c.kind = 'team' AND c.principal_id = m.team_id WHERE m.user_id = ?",
        (user_id, user_id),
    ).fetchall()
    for crn, text in granted:
        role = ProjectRole(text)
        if crn not in roles or role.rank > roles[crn].rank:
            roles[crn] = role
    return roles


def _enabled_admins(db: Db, cur: Cursor, project: Project, skip: tuple[str, str] | None) -> int:
    """How many enabled users hold admin in ``project``, leaving out collaborator row ``skip``
    (kind, principal id)."""
    admins: set[str] = set()
    owner = db.exec(
        cur,
        "SELECT u.id FROM projects p JOIN users u ON u.id = p.owner_id "
        "WHERE p.crn = ? AND u.disabled_ms IS NULL",
        (project.crn,),
    ).fetchall()
    admins.update(row[0] for row in owner)
    rows = db.exec(
        cur,
        "SELECT kind, principal_id FROM collaborators WHERE project_crn = ? AND role = 'admin'",
        (project.crn,),
    ).fetchall()
    for kind, principal in rows:
        if (kind, principal) == skip:
            continue
        users = (
            [(principal,)]
            if kind == "user"
            else db.exec(
                cur, "SELECT user_id FROM team_members WHERE team_id = ?", (principal,)
            ).fetchall()
        )
        for (user_id,) in users:
            enabled = db.exec(
                cur, "SELECT 1 FROM users WHERE id = ? AND disabled_ms IS NULL", (user_id,)
            ).fetchone()
            if enabled is not None:
                admins.add(user_id)
    return len(admins)


class Projects:
    """The projects and collaborators tables; ``changed`` drops the people caches."""

    def __init__(self, db: Db, clock: Clock, changed: Callable[[], None]) -> None:
        self._db = db
        self._now = clock
        self._changed = changed

    def create(self, name: str, *, owner: str, description: str = "") -> Project:
        name = _check_project_name(name)
        if not isinstance(description, str) or len(description) > _MAX_DESCRIPTION:
            raise InvalidInput(
                f"description={description!r:.100} is not accepted; expected a string of at "
                f"most {_MAX_DESCRIPTION} characters",
                argument="description",
            )
        crn = new_project_crn()
        now = self._now()

        def insert(cur: Cursor) -> Project:
            user = find_user(self._db, cur, owner)
            inserted = self._db.exec(
                cur,
                "INSERT INTO projects (crn, owner_id, name, description, created_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner_id, name) DO NOTHING",
                (crn, user.id, name, description, now),
            ).rowcount
            if inserted != 1:
                raise Conflict(
                    f"user {user.name!r} already has a project named {name!r} "
                    f"({user.name}/{name}); choose another name",
                    project=f"{user.name}/{name}",
                )
            return Project(crn, name, user.name, description, now)

        project = self._db.write(insert)
        self._changed()  # the owner gained a role
        return project

    def get(self, ref: str, visible: Collection[str] | None = None) -> Project:
        with self._db.read() as cur:
            return find_project(self._db, cur, ref, visible=visible)

    def default(self) -> Project:
        with self._db.read() as cur:
            project = find_default(self._db, cur)
        if project is None:
            raise NotFound(
                f"there is no default project yet; the server creates "
                f"{BOOTSTRAP_ADMIN}/{DEFAULT_PROJECT} when it starts (people.bootstrap())",
                project=DEFAULT_PROJECT,
            )
        return project

    def delete(self, ref: str) -> None:
        """Remove a project with its collaborators and secrets. Conflict while models or jobs
        belong to it (naming some), and for the default project (models and jobs made without
        a project go there; the server would create it again at its next start)."""

        def delete(cur: Cursor) -> None:
            project = find_project(self._db, cur, ref, lock=True)
            default = find_default(self._db, cur)
            if default is not None and default.crn == project.crn:
                raise Conflict(
                    f"project {project.full_name!r} is the default project, where models and "
                    "jobs made without a project go; it cannot be deleted",
                    project=project.full_name,
                )
            owned = []
            for what, query in _OWNED:
                names = self._db.exec(cur, query, (project.crn,)).fetchall()
                owned += [f"{what} {str(row[0]).rsplit('/', 1)[-1]!r}" for row in names[:5]]
                if len(names) > 5:
                    owned.append(f"more {what}s")
            if owned:
                raise Conflict(
                    f"project {project.full_name!r} still owns {', '.join(owned)}; delete or "
                    "move them first (an experiment run: 'modelyard experiments delete RUN'), "
                    "then delete the project",
                    project=project.full_name,
                )
            for table in ("collaborators", "secrets", "connections"):
                self._db.exec(cur, f"DELETE FROM {table} WHERE project_crn = ?", (project.crn,))
            self._db.exec(cur, "DELETE FROM projects WHERE crn = ?", (project.crn,))

        self._db.write(delete)
        self._changed()

    def _principal(self, cur: Cursor, kind: object, name: str) -> tuple[str, str, str | None]:
        """(kind, principal id, its user id if a user)."""
        if kind == "user":
            user = find_user(self._db, cur, name)
            return "user", user.id, user.name
        if kind == "team":
            team = find_team(self._db, cur, name)
            return "team", team.id, None
        raise InvalidInput(
            f"collaborator kind {kind!r} is not accepted; accepted: {', '.join(KINDS)}",
            argument="kind",
        )

    def _refuse_owner(self, project: Project, user_name: str | None, what: str) -> None:
        if user_name is not None and user_name == project.owner:
            raise Conflict(
                f"user {user_name!r} owns project {project.full_name!r} and is always its "
                f"admin; {what} is refused (a project keeps at least one admin: its owner)",
                project=project.full_name,
                user=user_name,
            )

    def set_collaborator(self, ref: str, kind: str, name: str, role: str) -> Collaborator:
        chosen = check_project_role(role)

        def upsert(cur: Cursor) -> Collaborator:
            project = find_project(self._db, cur, ref, lock=True)
            kind_, principal, user_name = self._principal(cur, kind, name)
            self._refuse_owner(project, user_name, f"giving them the role {chosen.value!r}")
            if chosen is not ProjectRole.ADMIN:
                self._keep_an_admin(cur, project, (kind_, principal), f"making {name!r} {chosen}")
            now = self._now()
            self._db.exec(
                cur,
                "INSERT INTO collaborators (project_crn, kind, principal_id, role, added_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (project_crn, kind, principal_id) "
                "DO UPDATE SET role = excluded.role",
                (project.crn, kind_, principal, chosen.value, now),
            )
            added = self._db.exec(
                cur,
                "SELECT added_ms FROM collaborators WHERE project_crn = ? AND kind = ? "
                "AND principal_id = ?",
                (project.crn, kind_, principal),
            ).fetchone()
            return Collaborator(project.crn, kind_, name, chosen, int(added[0]))

        collaborator = self._db.write(upsert)
        self._changed()
        return collaborator

    def _keep_an_admin(
        self, cur: Cursor, project: Project, row: tuple[str, str], what: str
    ) -> None:
        before = _enabled_admins(self._db, cur, project, None)
        if before > 0 and _enabled_admins(self._db, cur, project, row) == 0:
            raise Conflict(
                f"{what} would leave project {project.full_name!r} without an enabled admin "
                f"(its owner {project.owner!r} is disabled); make another user admin first",
                project=project.full_name,
            )

    def remove_collaborator(self, ref: str, kind: str, name: str) -> None:
        def remove(cur: Cursor) -> None:
            project = find_project(self._db, cur, ref, lock=True)
            kind_, principal, user_name = self._principal(cur, kind, name)
            self._refuse_owner(project, user_name, "removing them")
            key = (project.crn, kind_, principal)
            where = "WHERE project_crn = ? AND kind = ? AND principal_id = ?"
            row = self._db.exec(cur, f"SELECT role FROM collaborators {where}", key).fetchone()
            if row is None:
                listed = ", ".join(f"{c.kind} {c.name}" for c in self._rows(cur, project))
                raise NotFound(
                    f"{kind_} {name!r} is not a collaborator of project {project.full_name!r}; "
                    f"its collaborators: {listed}",
                    project=project.full_name,
                )
            self._keep_an_admin(cur, project, (kind_, principal), f"removing {kind_} {name!r}")
            self._db.exec(cur, f"DELETE FROM collaborators {where}", key)

        self._db.write(remove)
        self._changed()

    def _rows(self, cur: Cursor, project: Project) -> list[Collaborator]:
        owner = self._db.exec(
            cur, "SELECT created_ms FROM projects WHERE crn = ?", (project.crn,)
        ).fetchone()
        found = [Collaborator(project.crn, "user", project.owner, ProjectRole.ADMIN, int(owner[0]))]
        rows = self._db.exec(
            cur,
            "SELECT c.kind, COALESCE(u.name, t.name), c.role, c.added_ms FROM collaborators c "
            "LEFT JOIN users u ON c.kind = 'user' AND u.id = c.principal_id "
            "LEFT JOIN teams t ON c.kind = 'team' AND t.id = c.principal_id "
            "WHERE c.project_crn = ? ORDER BY c.kind DESC, 2",
            (project.crn,),
        ).fetchall()
        found += [
            Collaborator(project.crn, row[0], row[1], ProjectRole(row[2]), int(row[3]))
            for row in rows
            if row[1] is not None
        ]
        return found

    def collaborators(self, ref: str) -> list[Collaborator]:
        """The owner (as admin) first, then users, then teams, each by name."""
        with self._db.read() as cur:
            project = find_project(self._db, cur, ref)
            return self._rows(cur, project)

    def list(self) -> list[Project]:
        with self._db.read() as cur:
            rows = self._db.exec(cur, f"{_SELECT} ORDER BY u.name, p.name").fetchall()
        return [_project(row) for row in rows]
