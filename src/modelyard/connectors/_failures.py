"""One way every connector turns a driver's exception into ``ConnectorError``: the message names
the connection, where it points and what failed (refused, unknown host, bad credentials, missing
table or column, dropped halfway), followed by the driver's own words with every credential
value of the connection replaced by ``***`` (a driver may echo a connection string)."""

from __future__ import annotations

from collections.abc import Iterable

from modelyard.connectors.base import Connection, ConnectorError, Credentials

__all__ = ["REFUSED", "UNKNOWN_HOST", "classify", "failure", "scrub", "where"]

REFUSED = "connection refused"
UNKNOWN_HOST = "unknown host"
# Fragments of drivers' messages -> what failed, first match wins (lower-case).
_KNOWN: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        UNKNOWN_HOST,
        (
            "could not translate host name",
            "name or service not known",
            "nodename nor servname",
            "temporary failure in name resolution",
            "couldn't resolve host",
            "could not resolve host",
            "errno -2",
            "errno -3",
            "errno -5",
            "no address associated",
            "getaddrinfo failed",
        ),
    ),
    (
        REFUSED,
        ("connection refused", "errno 111", "couldn't connect to server", "could not connect to"),
    ),
    (
        "bad credentials",
        (
            "password authentication failed",
            "authentication failed",
            "access denied",
            "no password supplied",
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "authorization violation",
            "access_refused",
            "invalid_access_key",
            "forbidden",
        ),
    ),
    ("timed out", ("timeout expired", "timed out", "timeout")),
)


def where(connection: Connection) -> str:
    """Where a connection points, for messages: ``host:port/database``, a path, a bucket."""
    options = connection.options
    if "host" in options:
        port = f":{options['port']}" if "port" in options else ""
        database = f"/{options['database']}" if "database" in options else ""
        return f"{options['host']}{port}{database}"
    if "bucket" in options:
        endpoint = f"{options['endpoint_url']} " if "endpoint_url" in options else ""
        return f"{endpoint}s3://{options['bucket']}/{options.get('prefix', '')}"
    if "servers" in options:
        servers = options["servers"]
        return ",".join(servers) if isinstance(servers, list | tuple) else str(servers)
    return str(options.get("path", ""))


def scrub(text: str, connection: Connection, credentials: Credentials | None) -> str:
    """``text`` with the value of each credential of ``connection`` replaced by ``***``."""
    if credentials is None:
        return text
    for option in connection.secrets:
        value = credentials.get(option)
        if value:
            text = text.replace(value, "***")
    return text


def classify(text: str, known: Iterable[tuple[str, tuple[str, ...]]] = _KNOWN) -> str | None:
    """What failed, from a driver's message (see ``_KNOWN``), or None when it says nothing known."""
    lowered = text.lower()
    for what, fragments in known:
        if any(fragment in lowered for fragment in fragments):
            return what
    return None


def failure(
    connection: Connection,
    credentials: Credentials | None,
    what: str | None,
    exc: BaseException | str | None = None,
) -> ConnectorError:
    """``ConnectorError``: ``connection 'crm' (postgresql at db:5432/crm): <what>: <driver's
    words, scrubbed>``. ``what`` None: classified from the driver's words, else 'failed'."""
    said = " ".join(str(exc).split()) if exc is not None else ""
    said = scrub(said, connection, credentials)[:500]
    what = what or classify(said) or "failed"
    detail = f": {said}" if said and said.lower() != what else ""
    return ConnectorError(
        f"connection {connection.name!r} ({connection.kind} at {where(connection)}): "
        f"{what}{detail}",
        connection=connection.name,
        failed=what,
    )
