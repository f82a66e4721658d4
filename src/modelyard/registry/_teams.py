"""Teams: named groups of users. A team can be a project's collaborator like a user; each
member then has the team's role in that project (or a higher one of their own)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.ids import is_uuid
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._records import Team
from modelyard.registry._users import check_person_name, find_user

__all__ = ["Teams", "find_team"]


def find_team(db: Db, cur: Cursor, ref: object, *, lock: bool = False) -> Team:
    """The team ``ref`` names (an id or a name) with its members; NotFound naming it."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(
            f"team {ref!r} is not accepted; expected a team name such as 'data-science' or a "
            "team id",
            argument="team",
        )
    tail = db.for_update if lock else ""
    select = "SELECT id, name, created_ms FROM teams WHERE "
    row = db.exec(cur, f"{select}id = ?{tail}", (ref,)).fetchone() if is_uuid(ref) else None
    if row is None:
        row = db.exec(cur, f"{select}name = ?{tail}", (ref,)).fetchone()
    if row is None:
        names = [r[0] for r in db.exec(cur, "SELECT name FROM teams ORDER BY name LIMIT 11")]
        known = (
            f"known teams: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
            if names
            else "no teams exist yet; create one first"
        )
        raise NotFound(f"team {ref!r} does not exist; {known}", team=ref)
    members = db.exec(
        cur,
        "SELECT u.name FROM team_members m JOIN users u ON u.id = m.user_id "
        "WHERE m.team_id = ? ORDER BY u.name",
        (row[0],),
    ).fetchall()
    return Team(row[0], row[1], tuple(m[0] for m in members), int(row[2]))


class Teams:
    """The teams and team_members tables; ``changed`` drops the people caches (a membership
    changes project roles)."""

    def __init__(self, db: Db, clock: Clock, changed: Callable[[], None]) -> None:
        self._db = db
        self._now = clock
        self._changed = changed

    def create(self, name: str) -> Team:
        name = check_person_name("team", name)
        team = Team(str(uuid.uuid4()), name, (), self._now())

        def insert(cur: Cursor) -> Team:
            inserted = self._db.exec(
                cur,
                "INSERT INTO teams (id, name, created_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (team.id, name, team.created_ms),
            ).rowcount
            if inserted != 1:
                raise Conflict(
                    f"a team named {name!r} already exists; choose another name", team=name
                )
            return team

        return self._db.write(insert)

    def get(self, ref: str) -> Team:
        with self._db.read() as cur:
            return find_team(self._db, cur, ref)

    def list(self) -> list[Team]:
        with self._db.read() as cur:
            rows = self._db.exec(cur, "SELECT id, name, created_ms FROM teams ORDER BY name")
            teams = rows.fetchall()
            pairs = self._db.exec(
                cur,
                "SELECT m.team_id, u.name FROM team_members m JOIN users u ON u.id = m.user_id "
                "ORDER BY u.name",
            ).fetchall()
        members: dict[str, list[str]] = {}
        for team_id, user in pairs:
            members.setdefault(team_id, []).append(user)
        return [Team(r[0], r[1], tuple(members.get(r[0], ())), int(r[2])) for r in teams]

    def delete(self, ref: str) -> None:
        """Remove the team, its memberships and its collaborator rows (its members lose the
        roles they had through it)."""

        def delete(cur: Cursor) -> None:
            team = find_team(self._db, cur, ref, lock=True)
            self._db.exec(cur, "DELETE FROM team_members WHERE team_id = ?", (team.id,))
            self._db.exec(
                cur,
                "DELETE FROM collaborators WHERE kind = 'team' AND principal_id = ?",
                (team.id,),
            )
            self._db.exec(cur, "DELETE FROM teams WHERE id = ?", (team.id,))

        self._db.write(delete)
        self._changed()

    def add_member(self, team_ref: str, user_ref: str) -> Team:
        """Add a user to a team (idempotent)."""

        def add(cur: Cursor) -> Team:
            team = find_team(self._db, cur, team_ref, lock=True)
            user = find_user(self._db, cur, user_ref)
            self._db.exec(
                cur,
                "INSERT INTO team_members (team_id, user_id, added_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (team_id, user_id) DO NOTHING",
                (team.id, user.id, self._now()),
            )
            return find_team(self._db, cur, team.id)

        team = self._db.write(add)
        self._changed()
        return team

    def remove_member(self, team_ref: str, user_ref: str) -> Team:
        """Remove a user from a team; NotFound if they are not a member (naming the members)."""

        def remove(cur: Cursor) -> Team:
            team = find_team(self._db, cur, team_ref, lock=True)
            user = find_user(self._db, cur, user_ref)
            removed = self._db.exec(
                cur,
                "DELETE FROM team_members WHERE team_id = ? AND user_id = ?",
                (team.id, user.id),
            ).rowcount
            if removed != 1:
                members = ", ".join(team.members) or "none"
                raise NotFound(
                    f"user {user.name!r} is not a member of team {team.name!r}; its members: "
                    f"{members}",
                    team=team.name,
                    user=user.name,
                )
            return find_team(self._db, cur, team.id)

        team = self._db.write(remove)
        self._changed()
        return team
