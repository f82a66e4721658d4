"""``People``: users, teams, projects, collaborators and roles (``registry.people``).

Two lookups are on every authenticated request, so they are cached for ``cache_ttl_s`` (2 s by
default, like the key cache): ``user_by_id`` (is the key's user still enabled?) and
``project_roles`` (what may they do where?). Any change made through this object to users, teams,
memberships, projects or collaborators drops both caches in this process at once; another server
on the same database sees it once its entries are older than ``cache_ttl_s``. When the database
cannot be read, the last known answer is used for up to an hour (``TTLCache.stale``), as the key
cache does, so calls go on through a store outage.

``bootstrap`` runs at every server start: see its docstring for what an existing home gains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType

from modelyard.errors import NotFound, StoreUnavailable
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._passwords import check_password, hash_password, new_password
from modelyard.registry._projects import (
    BOOTSTRAP_ADMIN,
    DEFAULT_PROJECT,
    PROJECT_CRN_PREFIX,
    Projects,
    admin_user,
    find_default,
    new_project_crn,
    roles_of,
)
from modelyard.registry._records import Collaborator, Project, ProjectRole, Team, User
from modelyard.registry._teams import Teams
from modelyard.registry._users import Users
from modelyard.ttlcache import DEFAULT_TTL_S, TTLCache

__all__ = ["BOOTSTRAP_ADMIN", "DEFAULT_PROJECT", "PROJECT_CRN_PREFIX", "People"]

Roles = Mapping[str, ProjectRole]


class People:
    """Users, teams, projects and roles in the registry's database. ``moved`` is called after
    ``bootstrap`` gave rows a project or a user (the registry drops its model and key caches)."""

    def __init__(
        self,
        db: Db,
        clock: Clock,
        *,
        cache_ttl_s: float = DEFAULT_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
        moved: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._user_cache = TTLCache[User](cache_ttl_s, monotonic)
        self._role_cache = TTLCache[Roles](cache_ttl_s, monotonic)
        self._moved = moved
        self._generation = 0
        self._users = Users(db, clock, self._user_cache, self._changed)
        self._teams = Teams(db, clock, self._changed)
        self._projects = Projects(db, clock, self._changed)

    def _changed(self) -> None:
        self._user_cache.clear()
        self._role_cache.clear()
        self._generation += 1

    def generation(self) -> int:
        """A number that grows whenever users, teams, projects or roles change in this process:
        ``web/access.py`` drops the callers it resolved when it moves (a disabled user's keys
        stop at once on this server)."""
        return self._generation

    # -- the first start and existing homes -----------------------------------------------------
    def bootstrap(self, admin_password: str | None = None) -> str | None:
        """Make the registry ready for people; run at every server start, idempotent. Returns
        the new admin's password when this call created user ``admin``, else None.

        - no user ``admin`` and no server admin: create server admin ``admin`` with
          ``admin_password`` (default: a generated one);
        - create project ``default`` owned by that admin (``admin_user()``) if missing;
        - give every model and job without a project to ``default``;
        - keys without a user: ``admin`` keys go to the admin user; ``user`` keys go to the
          admin user narrowed to project ``default`` with project role ``operator`` (before,
          they could read and call: nothing lost, nothing widened beyond operator).

        Two servers starting together on one PostgreSQL: the user and project inserts are
        ``ON CONFLICT DO NOTHING`` on their unique keys, so the second waits for the first and
        then adds nothing (and gets None); the updates only touch rows still without a project
        or user.
        """
        chosen = None if admin_password is None else check_password(admin_password)
        with self._db.read() as cur:
            needed = admin_user(self._db, cur) is None
        password = (chosen or new_password()) if needed else None
        hashed = None if password is None else hash_password(password)  # 0.1 s: outside

        def run(cur: Cursor) -> tuple[bool, int]:
            created = False
            if hashed is not None and admin_user(self._db, cur) is None:
                created = self._users.insert_first_admin(cur, BOOTSTRAP_ADMIN, hashed)
            admin = admin_user(self._db, cur)
            assert admin is not None  # inserted above, by us or by a concurrent start
            self._db.exec(
                cur,
                "INSERT INTO projects (crn, owner_id, name, description, created_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner_id, name) DO NOTHING",
                (
                    new_project_crn(),
                    admin.id,
                    DEFAULT_PROJECT,
                    "Where models and jobs go when no project is named.",
                    admin.created_ms if created else self._clock(),
                ),
            )
            default = find_default(self._db, cur)
            assert default is not None
            return created, self._adopt(cur, admin.id, default.crn)

        created, moved = self._db.write(run)
        self._changed()
        if moved:
            self._moved()
        return password if created else None

    def _adopt(self, cur: Cursor, admin_id: str, default_crn: str) -> int:
        """Rows written before people existed join ``default`` and the admin user."""
        moved = 0
        for table in ("models", "jobs"):
            moved += self._db.exec(
                cur,
                f"UPDATE {table} SET project_crn = ? WHERE project_crn IS NULL",
                (default_crn,),
            ).rowcount
        moved += self._db.exec(
            cur,
            "UPDATE api_keys SET user_id = ? WHERE user_id IS NULL AND role = 'admin'",
            (admin_id,),
        ).rowcount
        moved += self._db.exec(
            cur,
            "UPDATE api_keys SET user_id = ?, project_crn = ?, project_role = ? "
            "WHERE user_id IS NULL AND role = 'user'",
            (admin_id, default_crn, ProjectRole.OPERATOR.value),
        ).rowcount
        return int(moved)

    def admin_user(self) -> User:
        """The user that owns the default project and the admin key the server mints: ``admin``,
        else the oldest server admin. NotFound before ``bootstrap``."""
        with self._db.read() as cur:
            user = admin_user(self._db, cur)
        if user is None:
            raise NotFound(
                "there is no admin user yet; the server creates user 'admin' when it starts "
                "(people.bootstrap())",
                user=BOOTSTRAP_ADMIN,
            )
        return user

    def any_users(self) -> bool:
        """Whether any user exists (admin and user keys then need one)."""
        return self._users.any()

    # -- users ----------------------------------------------------------------------------------
    def create_user(
        self,
        name: str,
        *,
        email: str | None = None,
        admin: bool = False,
        password: str | None = None,
    ) -> User:
        """A new user (Conflict if the name is taken); ``password`` None: keys only until one
        is set."""
        return self._users.create(name, email=email, admin=admin, password=password)

    def get_user(self, name_or_id: str) -> User:
        return self._users.get(name_or_id)

    def user_by_id(self, user_id: str) -> User:
        """``get_user`` by id through the 2 s cache; NotFound if there is no such user."""
        try:
            return self._users.by_id(user_id)
        except StoreUnavailable:
            stale = self._user_cache.stale(user_id)
            if stale is None:
                raise
            return stale

    def list_users(self) -> list[User]:
        """Every user, by name."""
        return self._users.list()

    def set_disabled(self, name: str, disabled: bool) -> User:
        """Disable (their sessions and keys stop working) or enable a user."""
        return self._users.set_disabled(name, disabled)

    def set_password(self, name: str, password: str) -> None:
        """Store the argon2id hash of ``password`` (8 to 1000 characters)."""
        self._users.set_password(name, password)

    def sign_in(self, name: str, password: str) -> User:
        """The user, if the password is theirs and they are enabled; one Unauthorized for every
        reason otherwise, in about the same time."""
        return self._users.sign_in(name, password)

    # -- teams ----------------------------------------------------------------------------------
    def create_team(self, name: str) -> Team:
        return self._teams.create(name)

    def get_team(self, name: str) -> Team:
        return self._teams.get(name)

    def list_teams(self) -> list[Team]:
        """Every team with its members, by name."""
        return self._teams.list()

    def delete_team(self, name: str) -> None:
        """Remove a team; its members lose the roles they had through it."""
        self._teams.delete(name)

    def add_member(self, team: str, user: str) -> Team:
        return self._teams.add_member(team, user)

    def remove_member(self, team: str, user: str) -> Team:
        return self._teams.remove_member(team, user)

    # -- projects -------------------------------------------------------------------------------
    def create_project(self, name: str, *, owner: str, description: str = "") -> Project:
        """A new project owned by user ``owner`` (a name or id); Conflict if they have one of
        that name already."""
        return self._projects.create(name, owner=owner, description=description)

    def get_project(self, ref: str, *, visible: Collection[str] | None = None) -> Project:
        """The project ``ref`` names: CRN, bare uuid, ``owner/name``, or a bare name exactly one
        project of ``visible`` (CRNs; None: every project) has."""
        return self._projects.get(ref, visible)

    def list_projects(self) -> list[Project]:
        """Every project, by owner and name."""
        return self._projects.list()

    def delete_project(self, ref: str) -> None:
        """Remove a project with its collaborators and secrets; Conflict while it owns models
        or jobs, and for the default project."""
        self._projects.delete(ref)

    def default_project(self) -> Project:
        """Where models and jobs go when no project is named (``admin/default``)."""
        return self._projects.default()

    def set_collaborator(self, project_crn: str, kind: str, name: str, role: str) -> Collaborator:
        """Give user or team (``kind``) ``name`` the ``role`` in the project (any project ref);
        replaces their previous role there."""
        return self._projects.set_collaborator(project_crn, kind, name, role)

    def remove_collaborator(self, project_crn: str, kind: str, name: str) -> None:
        """Take the user's or team's row away; Conflict for the owner and when no enabled admin
        would remain (see ``_projects``)."""
        self._projects.remove_collaborator(project_crn, kind, name)

    def collaborators(self, project_crn: str) -> list[Collaborator]:
        """The owner (as admin), then users, then teams."""
        return self._projects.collaborators(project_crn)

    def project_roles(self, user_id: str) -> Roles:
        """Project CRN -> the user's role (owner, own row, teams: the highest), through the 2 s
        cache. Server admins get no extra entries here: the access layer grants them all."""
        generation = self._role_cache.generation()
        cached = self._role_cache.get(user_id)
        if cached is not None:
            return cached
        try:
            with self._db.read() as cur:
                roles: Roles = MappingProxyType(roles_of(self._db, cur, user_id))
        except StoreUnavailable:
            stale = self._role_cache.stale(user_id)
            if stale is None:
                raise
            return stale
        self._role_cache.put(user_id, roles, generation)
        return roles
