"""Opening the metrics store a process should use.

Precedence: an explicit ``url`` argument, then ``MODELYARD_DATABASE_URL``, then SQLite at
``$MODELYARD_HOME/modelyard.db`` (the folder is created). Accepted URLs:

- ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` (as in SQLAlchemy),
- ``sqlite://:memory:`` (or ``sqlite:///:memory:``) for a store living as long as the process,
- ``postgresql://...`` / ``postgres://...`` (libpq URLs, passed to psycopg as they are).
"""

from __future__ import annotations

from modelyard import settings
from modelyard.errors import InvalidInput
from modelyard.homedir import make_home
from modelyard.store.base import MetricsStore

__all__ = ["default_sqlite_path", "open_store"]

_ACCEPTED = "sqlite:///path/to/file.db, sqlite://:memory: or postgresql://user@host:5432/db"


def default_sqlite_path() -> str:
    home = make_home(settings.home())
    return str(home / "modelyard.db")


def open_store(url: str | None = None) -> MetricsStore:
    """Open (and migrate) the store named by ``url`` or the environment; see the module doc."""
    chosen = url if url is not None else settings.get("database_url")
    if chosen is None:
        from modelyard.store.sqlite import SQLiteStore

        return SQLiteStore(default_sqlite_path())
    if not isinstance(chosen, str) or not chosen.strip():
        raise InvalidInput(f"store URL {chosen!r} is empty; use {_ACCEPTED}")
    text = chosen.strip()
    if text.startswith(("postgresql://", "postgres://")):
        from modelyard.store.postgres import PostgresStore

        return PostgresStore(text)
    if text.startswith("sqlite://"):
        from modelyard.store.sqlite import SQLiteStore

        rest = text[len("sqlite://") :]
        if rest in (":memory:", "/:memory:"):
            return SQLiteStore(":memory:")
        if rest.startswith("/") and len(rest) > 1:
            # As in SQLAlchemy: three slashes then a relative path, four for an absolute one.
            return SQLiteStore(rest[1:])
    raise InvalidInput(f"store URL {text!r} is not supported; use {_ACCEPTED}", url=text)
