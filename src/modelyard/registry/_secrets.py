"""Project secrets: named values (a database password, an API token) that a project's
deployments and jobs get as environment variables, encrypted at rest (``SecretBox``).

What leaves this module: ``SecretInfo`` (name, who set it, when: never a value) from ``set``,
``get`` and ``list``; values only from ``values`` (and ``read_secrets``, which also records the
read in the audit log), which the server calls when it starts a replica or a run, never a route.
Messages name secrets and projects, never a value.

The box (the key) comes from the server's home or the operator (``SecretBox.for_home``), which
the registry does not know: the server hands it over at start (``secrets.configure(box)``).
Listing and deleting work without it; setting and reading need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._projects import check_project_crn, project_names_text, project_shown
from modelyard.registry._secretbox import SecretBox, SecretKeyError
from modelyard.specs.secret_names import (
    check_secret_name,
    check_secret_names,
    check_secret_value,
)

__all__ = ["SecretInfo", "Secrets", "read_secrets"]

_COLUMNS = "project_crn, name, set_by, created_ms, updated_ms"


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret as anyone may see it: its ``name`` in ``project_crn``, who set it last
    (``set_by``: a user name, or ``key:<id>``) and when. Never its value."""

    project_crn: str
    name: str
    set_by: str
    created_ms: int
    updated_ms: int


def _info(row: Any) -> SecretInfo:
    return SecretInfo(
        project_crn=row[0],
        name=row[1],
        set_by=row[2],
        created_ms=int(row[3]),
        updated_ms=int(row[4]),
    )


class Secrets:
    """``registry.secrets``: set, list, delete and (server-internal) read project secrets."""

    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock
        self._box: SecretBox | None = None

    def configure(self, box: SecretBox) -> None:
        """Use ``box`` to encrypt and decrypt (the server calls this once, at start)."""
        if not isinstance(box, SecretBox):
            raise InvalidInput(f"box={box!r:.100} is not accepted; expected a SecretBox")
        self._box = box

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            raise SecretKeyError(
                "no secrets key is configured in this process: the server configures it at "
                "start (registry.secrets.configure(SecretBox.for_home(home))); a registry "
                "opened elsewhere can list and delete secrets, not set or read them"
            )
        return self._box

    # -- changes ----------------------------------------------------------------------------------
    def set(self, project_crn: str, name: str, value: str, set_by: str) -> SecretInfo:
        """Create the secret ``name`` in the project, or replace its value."""
        project_crn = check_project_crn(project_crn)
        name = check_secret_name(name)
        value = check_secret_value(name, value)
        if not isinstance(set_by, str) or not set_by or len(set_by) > 200:
            raise InvalidInput(
                f"set_by={set_by!r:.100} is not accepted; expected who sets the secret (a user "
                "name or 'key:<id>'), 1 to 200 characters"
            )
        token = self.box.seal(project_crn, name, value)
        now = self._now()

        def upsert(cur: Cursor) -> SecretInfo:
            project_shown(self._db, cur, project_crn)
            self._db.exec(
                cur,
                "INSERT INTO secrets (project_crn, name, ciphertext, set_by, created_ms, "
                "updated_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project_crn, name) DO UPDATE "
                "SET ciphertext = excluded.ciphertext, set_by = excluded.set_by, "
                "updated_ms = excluded.updated_ms",
                (project_crn, name, token, set_by, now, now),
            )
            return self._find(cur, project_crn, name)

        return self._db.write(upsert)

    def delete(self, project_crn: str, name: str) -> None:
        """Remove the secret; NotFound naming it if the project has no such secret."""
        project_crn = check_project_crn(project_crn)
        name = check_secret_name(name)

        def delete(cur: Cursor) -> None:
            shown = project_shown(self._db, cur, project_crn)
            gone = self._db.exec(
                cur,
                "DELETE FROM secrets WHERE project_crn = ? AND name = ?",
                (project_crn, name),
            ).rowcount
            if gone != 1:
                raise self._missing(cur, project_crn, shown, [name])

        self._db.write(delete)

    # -- reads ------------------------------------------------------------------------------------
    def _find(self, cur: Cursor, project_crn: str, name: str) -> SecretInfo:
        row = self._db.exec(
            cur,
            f"SELECT {_COLUMNS} FROM secrets WHERE project_crn = ? AND name = ?",
            (project_crn, name),
        ).fetchone()
        if row is None:
            raise self._missing(cur, project_crn, project_shown(self._db, cur, project_crn), [name])
        return _info(row)

    def _missing(self, cur: Cursor, project_crn: str, shown: str, names: list[str]) -> NotFound:
        have = project_names_text(self._db, cur, "secrets", project_crn)
        which = ", ".join(repr(n) for n in names)
        noun = "secret" if len(names) == 1 else "secrets"
        return NotFound(
            f"{noun} {which} not set in project {shown!r} ({have}); set it with 'modelyard "
            f"secrets set {names[0]} --project {shown}'",
            secrets=names,
            project=shown,
        )

    def get(self, project_crn: str, name: str) -> SecretInfo:
        """The secret's name, setter and times; NotFound naming it and the project."""
        project_crn = check_project_crn(project_crn)
        name = check_secret_name(name)
        with self._db.read() as cur:
            return self._find(cur, project_crn, name)

    def check(self, project_crn: str | None, names: Iterable[str]) -> None:
        """NotFound naming every one of ``names`` the project lacks (nothing is decrypted):
        a deploy checks before it builds, so a missing secret fails it at once."""
        wanted = check_secret_names(names)
        if not wanted:
            return
        project = check_project_crn(project_crn)
        with self._db.read() as cur:
            self._rows(cur, project, wanted)

    def _rows(self, cur: Cursor, project_crn: str, names: tuple[str, ...]) -> dict[str, bytes]:
        shown = project_shown(self._db, cur, project_crn)
        marks = ", ".join("?" * len(names))
        rows = self._db.exec(
            cur,
            f"SELECT name, ciphertext FROM secrets WHERE project_crn = ? AND name IN ({marks})",
            (project_crn, *names),
        ).fetchall()
        found = {str(row[0]): bytes(row[1]) for row in rows}
        missing = [name for name in names if name not in found]
        if missing:
            raise self._missing(cur, project_crn, shown, missing)
        return found

    def values(self, project_crn: str | None, names: Iterable[str]) -> dict[str, str]:
        """Server-internal: ``{name: value}`` of ``names`` in the project (empty for no names);
        NotFound naming every missing secret and the project; SecretKeyError if this server's
        key cannot decrypt one. Never give the answer to a client."""
        wanted = check_secret_names(names)
        if not wanted:
            return {}
        project = check_project_crn(project_crn)
        with self._db.read() as cur:
            shown = project_shown(self._db, cur, project)
            tokens = self._rows(cur, project, wanted)
        box = self.box
        return {name: box.unseal(project, name, tokens[name], shown) for name in wanted}

    def rotate(self) -> int:
        """Re-encrypt every secret with the first key of ``MODELYARD_SECRETS_KEY`` (after a new
        key was put first); returns how many. Afterwards the old key can be dropped."""
        box = self.box

        def rotate(cur: Cursor) -> int:
            rows = self._db.exec(
                cur, f"SELECT project_crn, name, ciphertext FROM secrets{self._db.for_update}"
            ).fetchall()
            for project_crn, name, token in rows:
                box.unseal(project_crn, name, bytes(token))  # refuses a foreign token, naming it
                self._db.exec(
                    cur,
                    "UPDATE secrets SET ciphertext = ? WHERE project_crn = ? AND name = ?",
                    (box.rotated(bytes(token)), project_crn, name),
                )
            return len(rows)

        return self._db.write(rotate)

    def list(self, project_crn: str) -> list[SecretInfo]:
        """The project's secrets by name (no values); NotFound for an unknown project."""
        project_crn = check_project_crn(project_crn)
        with self._db.read() as cur:
            project_shown(self._db, cur, project_crn)
            rows = self._db.exec(
                cur,
                f"SELECT {_COLUMNS} FROM secrets WHERE project_crn = ? ORDER BY name",
                (project_crn,),
            ).fetchall()
        return [_info(row) for row in rows]


class _HasSecrets(Protocol):
    @property
    def secrets(self) -> Secrets: ...


def read_secrets(
    registry: _HasSecrets,
    project_crn: str | None,
    names: Iterable[str],
    *,
    object: str,
    for_: str,
) -> dict[str, str]:
    """``registry.secrets.values(...)`` for starting a replica or a run, recorded in the audit
    log (actor ``system``, action ``secrets.read``, the names and what they were read ``for_``:
    a deployment CRN or a run id; never a value). Nothing is read or recorded for no names."""
    wanted = check_secret_names(names)
    if not wanted:
        return {}
    values = registry.secrets.values(project_crn, wanted)
    audit = getattr(registry, "audit", None)  # registry.audit (the audit log) may be absent
    if audit is not None:
        audit.record(
            "system",
            "secrets.read",
            object=object,
            project_crn=project_crn,
            details={"names": list(wanted), "for": for_},
        )
    return values
