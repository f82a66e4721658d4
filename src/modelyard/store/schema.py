"""Versioned schema migrations, shared by the SQLite and PostgreSQL stores.

Migrations are plain SQL files in ``modelyard/store/migrations``, named
``<version>_<name>.<dialect>.sql``. A store applies the ones its database lacks when it opens, all
in one transaction (an upgrade either completes or leaves the database as it was; SQLite and
PostgreSQL both roll back DDL), under a lock so processes opening together apply each once, and
records them in ``schema_migrations`` together with the Modelyard release that applied them.
That release is what lets an *older* Modelyard refuse a database written by a newer one with a
useful message: the old code cannot know future versions, but the database can tell it which
release is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from modelyard.clock import now_ms
from modelyard.errors import StoreUnavailable
from modelyard.store.sqltypes import Cursor, Execute
from modelyard.version import package_version

__all__ = [
    "CREATE_MIGRATIONS_TABLE",
    "RELEASES",
    "SCHEMA_VERSION",
    "Migration",
    "apply_migrations",
    "check_version",
    "migrations",
    "schema_version",
]

# Schema version -> the first Modelyard release that writes it. Extend with every new migration.
RELEASES: dict[int, str] = {
    1: "0.1.0",
    2: "0.1.0",
    3: "0.1.0",
    4: "0.1.0",
    5: "0.1.0",
    6: "0.1.0",
    7: "0.1.0",
    8: "0.1.0",
    9: "0.1.0",
    10: "0.1.0",
    11: "0.1.0",
}
SCHEMA_VERSION = max(RELEASES)

CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " modelyard_version TEXT NOT NULL,"
    " applied_ms BIGINT NOT NULL)"
)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgres)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """The migrations of ``dialect`` (``sqlite`` or ``postgres``) in version order."""
    folder = resources.files("modelyard.store").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None or match.group(3) != dialect:
            continue
        text = entry.read_text(encoding="utf-8")
        found.append(Migration(int(match.group(1)), match.group(2), _statements(text)))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, SCHEMA_VERSION + 1)):
        raise RuntimeError(
            f"{dialect} migrations {versions} do not match schema versions 1..{SCHEMA_VERSION}; "
            "the installed package is incomplete (reinstall modelyard)"
        )
    return tuple(found)


def _statements(text: str) -> tuple[str, ...]:
    """Split a migration file into statements (the files hold no ';' inside literals)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())


def _python_step(version: int, cur: Cursor, execute: Execute, dialect: str) -> None:
    """What a migration does in Python after its SQL, in the same transaction: converting rows
    needs the same encoding as ingest (0007: ``typed.convert_rows``)."""
    if version == 7:
        from modelyard.store.typed import convert_rows

        convert_rows(cur, execute, dialect)


def check_version(version: int, release: str | None, location: str) -> None:
    """Refuse a database whose schema is newer than this code knows."""
    if version <= SCHEMA_VERSION:
        return
    needed = release or RELEASES.get(version)
    upgrade = (
        f"upgrade to Modelyard {needed} or later (pip install -U 'modelyard>={needed}')"
        if needed
        else "upgrade Modelyard (pip install -U modelyard)"
    )
    raise StoreUnavailable(
        f"the metrics store at {location} has schema version {version}, newer than this "
        f"Modelyard {package_version()} understands (up to {SCHEMA_VERSION}); {upgrade}, "
        "or point MODELYARD_DATABASE_URL/MODELYARD_HOME at another store",
        schema_version=version,
        supported=SCHEMA_VERSION,
        needs=needed,
    )


def schema_version(cur: Cursor, execute: Execute) -> tuple[int, str | None]:
    """(the newest version applied, the release that applied it); (0, None) when none is."""
    row = execute(
        cur,
        "SELECT version, modelyard_version FROM schema_migrations ORDER BY version DESC LIMIT 1",
        (),
    ).fetchone()
    return (0, None) if row is None else (int(row[0]), str(row[1]))


def apply_migrations(cur: Cursor, execute: Execute, dialect: str, location: str) -> int:
    """Bring the schema of the store at ``location`` up to date inside the caller's (exclusive)
    transaction; refuses a schema newer than this code. Returns the version reached."""
    cur.execute(CREATE_MIGRATIONS_TABLE)
    version, release = schema_version(cur, execute)
    check_version(version, release, location)
    for migration in migrations(dialect):
        if migration.version <= version:
            continue
        for statement in migration.statements:
            cur.execute(statement)
        _python_step(migration.version, cur, execute, dialect)
        execute(
            cur,
            "INSERT INTO schema_migrations (version, name, modelyard_version, applied_ms) "
            "VALUES (?, ?, ?, ?)",
            (migration.version, migration.name, package_version(), now_ms()),
        )
        version = migration.version
    return version
