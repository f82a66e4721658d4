"""Project connections: named places a project's data lives (a database, a bucket, a folder, a
stream), kept as ``connections`` rows: kind, options in the clear, and which project secret
holds each credential (never a value: values stay encrypted in ``secrets``).

``registry.connections`` creates, changes, reads and deletes them; every definition goes through
``ConnectionSpec`` (``specs.connection``), so the CLI, the REST API and the registry accept and
refuse alike. Changes are recorded in the audit log by the REST API that makes them (kind,
option and secret names: never a value).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from modelyard.connectors.base import Connection
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._projects import check_project_crn, project_names_text, project_shown
from modelyard.specs.connection import ConnectionSpec, check_connection_name

__all__ = ["Connections"]

_COLUMNS = "project_crn, name, kind, options, secrets, created_by, created_ms, updated_ms"
MAX_CONNECTIONS = 1000  # per project


def _connection(row: Any) -> Connection:
    return Connection(
        project_crn=row[0],
        name=row[1],
        kind=row[2],
        options=orjson.loads(row[3]),
        secrets=orjson.loads(row[4]),
        created_by=row[5],
        created_ms=int(row[6]),
        updated_ms=int(row[7]),
    )


class Connections:
    """``registry.connections``: a project's connections by name (see the module docstring)."""

    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    def _find(self, cur: Cursor, project_crn: str, name: str) -> Connection:
        row = self._db.exec(
            cur,
            f"SELECT {_COLUMNS} FROM connections WHERE project_crn = ? AND name = ?",
            (project_crn, name),
        ).fetchone()
        if row is None:
            raise self._missing(cur, project_crn, name)
        return _connection(row)

    def _missing(self, cur: Cursor, project_crn: str, name: str) -> NotFound:
        shown = project_shown(self._db, cur, project_crn)
        have = project_names_text(self._db, cur, "connections", project_crn)
        return NotFound(
            f"connection {name!r} does not exist in project {shown!r} ({have}); "
            f"'modelyard connections list --project {shown}' shows them",
            connection=name,
            project=shown,
        )

    # -- changes ----------------------------------------------------------------------------------
    def create(
        self,
        project_crn: str,
        name: str,
        kind: str,
        options: Mapping[str, Any] | None,
        secrets: Mapping[str, str] | None,
        created_by: str,
    ) -> Connection:
        """A new connection in the project; Conflict naming it if the name is taken."""
        project_crn = check_project_crn(project_crn)
        spec = ConnectionSpec(
            name=name, kind=kind, options=dict(options or {}), secrets=dict(secrets or {})
        )
        if not isinstance(created_by, str) or not created_by or len(created_by) > 200:
            raise InvalidInput(
                f"created_by={created_by!r:.100} is not accepted; expected who creates the "
                "connection (a user name or 'key:<id>'), 1 to 200 characters"
            )
        now = self._now()

        def insert(cur: Cursor) -> Connection:
            shown = project_shown(self._db, cur, project_crn)
            rows = self._db.exec(
                cur,
                "SELECT name FROM connections WHERE project_crn = ? ORDER BY name",
                (project_crn,),
            ).fetchall()
            names = {str(row[0]) for row in rows}
            if spec.name in names:
                raise Conflict(
                    f"connection {spec.name!r} already exists in project {shown!r}; change it "
                    f"with 'modelyard connections update {spec.name}' or delete it first",
                    connection=spec.name,
                )
            if len(names) >= MAX_CONNECTIONS:
                raise InvalidInput(
                    f"project {shown!r} has {len(names)} connections; accepted: at most "
                    f"{MAX_CONNECTIONS} (delete some first)"
                )
            self._db.exec(
                cur,
                f"INSERT INTO connections ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    project_crn,
                    spec.name,
                    spec.kind,
                    orjson.dumps(spec.options).decode(),
                    orjson.dumps(spec.secrets).decode(),
                    created_by,
                    now,
                    now,
                ),
            )
            return self._find(cur, project_crn, spec.name)

        return self._db.write(insert)

    def update(
        self,
        project_crn: str,
        name: str,
        *,
        options: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> Connection:
        """Replace the connection's ``options`` and/or ``secrets`` (None keeps them; the kind
        never changes: delete and create for another kind). Checked as a whole again."""
        project_crn = check_project_crn(project_crn)
        name = check_connection_name(name)
        now = self._now()

        def change(cur: Cursor) -> Connection:
            found = self._find(cur, project_crn, name)
            spec = ConnectionSpec(
                name=found.name,
                kind=found.kind,
                options=dict(found.options),
                secrets=dict(found.secrets),
            ).changed(options, secrets)
            self._db.exec(
                cur,
                "UPDATE connections SET options = ?, secrets = ?, updated_ms = ? "
                "WHERE project_crn = ? AND name = ?",
                (
                    orjson.dumps(spec.options).decode(),
                    orjson.dumps(spec.secrets).decode(),
                    now,
                    project_crn,
                    name,
                ),
            )
            return self._find(cur, project_crn, name)

        return self._db.write(change)

    def delete(self, project_crn: str, name: str) -> None:
        """Remove the connection; NotFound naming it (and the project's others) if absent."""
        project_crn = check_project_crn(project_crn)
        name = check_connection_name(name)

        def delete(cur: Cursor) -> None:
            gone = self._db.exec(
                cur,
                "DELETE FROM connections WHERE project_crn = ? AND name = ?",
                (project_crn, name),
            ).rowcount
            if gone != 1:
                raise self._missing(cur, project_crn, name)

        self._db.write(delete)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, project_crn: str, name: str) -> Connection:
        """The connection; NotFound naming it, the project and how to list them."""
        project_crn = check_project_crn(project_crn)
        name = check_connection_name(name)
        with self._db.read() as cur:
            return self._find(cur, project_crn, name)

    def list(self, project_crn: str) -> list[Connection]:
        """The project's connections by name; NotFound for an unknown project."""
        project_crn = check_project_crn(project_crn)
        with self._db.read() as cur:
            project_shown(self._db, cur, project_crn)
            rows = self._db.exec(
                cur,
                f"SELECT {_COLUMNS} FROM connections WHERE project_crn = ? ORDER BY name",
                (project_crn,),
            ).fetchall()
        return [_connection(row) for row in rows]
