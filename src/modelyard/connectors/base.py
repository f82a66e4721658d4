"""What every connector shares: a connection's definition, its credentials, what to read, and
the one error a failed source raises.

A *connection* is a named place a project's data lives (a PostgreSQL, MySQL/MariaDB or SQLite
database, an S3-compatible bucket, a folder of files, a NATS JetStream stream or a RabbitMQ
queue). Its address and options are kept in the clear; its credentials are project secrets, named
by ``Connection.secrets`` (credential option -> secret name) and resolved only where the data is
read (``Credentials``): the server from its encrypted secrets, a monitor's run process from the
environment variables its run was given. Nothing here, no message and no ``repr``, shows a
credential's value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import ConnectorError, InvalidInput

__all__ = [
    "FILE_KINDS",
    "KINDS",
    "SQL_KINDS",
    "STREAM_KINDS",
    "Connection",
    "ConnectorError",  # modelyard.errors.ConnectorError, re-exported
    "Credentials",
    "Probe",
    "Source",
]

SQL_KINDS = ("postgresql", "mysql", "sqlite")
FILE_KINDS = ("s3", "files")
STREAM_KINDS = ("nats", "rabbitmq")
KINDS = SQL_KINDS + FILE_KINDS + STREAM_KINDS


@dataclass(frozen=True)
class Connection:
    """A named connection of a project. ``options`` are in the clear (host, port, database,
    bucket, endpoint, path, stream, queue...); ``secrets`` maps a credential option (``password``,
    ``secret_key``...) to the project secret that holds its value."""

    project_crn: str
    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    created_by: str = ""
    created_ms: int = 0
    updated_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        """What anyone allowed to see the connection may see: never a credential's value."""
        return {
            "project_crn": self.project_crn,
            "name": self.name,
            "kind": self.kind,
            "options": dict(self.options),
            "secrets": dict(self.secrets),
            "created_by": self.created_by,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }


class Credentials:
    """Credential option -> value for one connection; its ``repr`` names the options only."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def get(self, option: str) -> str | None:
        return self._values.get(option)

    def __repr__(self) -> str:
        return "Credentials(" + ", ".join(f"{k}=***" for k in sorted(self._values)) + ")"

    @classmethod
    def resolve(cls, connection: Connection, lookup: Callable[[str], str | None]) -> Credentials:
        """Each credential of ``connection`` through ``lookup(secret_name)``; a secret that
        ``lookup`` lacks is an error naming the connection, the option and the secret."""
        values: dict[str, str] = {}
        for option, secret in connection.secrets.items():
            value = lookup(secret)
            if value is None:
                raise InvalidInput(
                    f"connection {connection.name!r} needs project secret {secret!r} (its "
                    f"{option!r}), which is not set here; set it with "
                    f"'modelyard secrets set {secret}'",
                    connection=connection.name,
                    secret=secret,
                )
            values[option] = value
        return cls(values)

    @classmethod
    def from_env(
        cls, connection: Connection, environ: Mapping[str, str] | None = None
    ) -> Credentials:
        """In a run process: secrets arrive as environment variables of the same name."""
        env = os.environ if environ is None else environ
        return cls.resolve(connection, env.get)


@dataclass(frozen=True)
class Source:
    """What to read from a table or file connection: exactly one of ``table``, ``query`` (SQL
    kinds) and ``path`` (a glob under the connection's folder or bucket prefix; ``format``
    parquet or csv, by default from the extension). With ``time_column``, reads are incremental:
    only rows whose value is at or after the watermark."""

    table: str | None = None
    query: str | None = None
    path: str | None = None
    format: str | None = None
    time_column: str | None = None
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Probe:
    """What ``connections test`` found: ``ok`` and one line saying what (a server version, the
    tables, objects or messages seen) or exactly why not (refused, unknown host, bad
    credentials)."""

    ok: bool
    detail: str
