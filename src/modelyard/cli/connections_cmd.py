"""``modelyard connections``: a project's connections to where its data lives (create, list, show,
update, test, delete), through the server's ``/api/v1/projects/{project}/connections``.

Options are given as ``--option key=value`` (repeatable) and credentials as ``--secret
option=SECRET_NAME``: the name of a project secret (``modelyard secrets set SECRET_NAME``), never
a value. One generic pair of flags rather than ``--host``/``--bucket``/...: seven kinds take
different options, and the server checks each against its kind with one set of messages
(``specs.connection``), which the REST API and this command share.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from modelyard.cli.client import connect
from modelyard.cli.config import project_option
from modelyard.cli.output import json_option, print_json, print_mapping, print_rows
from modelyard.cli.projects_cmd import delete_in_project, in_project
from modelyard.errors import InvalidInput

__all__ = ["connections", "parse_pairs"]

KINDS = ("postgresql", "mysql", "sqlite", "s3", "files", "nats", "rabbitmq")
_COLUMNS = ["name", "kind", "where", "secrets", "updated_ms"]
_KIND_HELP = (
    "postgresql/mysql: host, port, database, user (+ sslmode, connect_timeout, "
    "statement_timeout, application_name / ssl, charset, connect_timeout, read_timeout); "
    "sqlite: path (absolute); files: path (an absolute folder); s3: bucket, prefix, "
    "endpoint_url, region; nats: servers, stream, subject, durable; rabbitmq: host, port, "
    "vhost, queue, user, ssl"
)
_SECRET_HELP = (
    "credential=SECRET_NAME, repeatable: postgresql/mysql/rabbitmq: password; s3: "
    "access_key_id, secret_access_key, session_token; nats: token, or user and password"
)


def parse_pairs(flag: str, pairs: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` pairs as a dict; InvalidInput naming the flag and the bad pair.

    >>> parse_pairs("--option", ("host=db", "port=5432"))
    {'host': 'db', 'port': '5432'}
    """
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(
                f"{flag} {pair.split('=')[0]!r:.60} is not accepted; expected key=value, such "
                f"as {flag} {'host=db.internal' if flag == '--option' else 'password=DB_PASSWORD'}"
            )
        found[key.strip()] = value
    return found


def _where(found: dict[str, Any]) -> str:
    options = found.get("options") or {}
    for key in ("host", "bucket", "path", "servers"):
        if key in options:
            value = options[key]
            return ",".join(value) if isinstance(value, list) else str(value)
    return ""


@click.group()
def connections() -> None:
    """A project's connections: where its ground truth and reference data live (databases,
    buckets, folders, streams). Addresses and options are kept in the clear; credentials are
    project secrets, named here and never shown."""


@connections.command("create")
@click.argument("name")
@click.option("--kind", required=True, type=click.Choice(KINDS), help="What it connects to.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help=_KIND_HELP)
@click.option("--secret", "secrets", multiple=True, metavar="CREDENTIAL=SECRET", help=_SECRET_HELP)
@project_option()
@json_option("Print the connection as JSON (no credential values: there are none to print).")
def create(
    name: str,
    kind: str,
    options: tuple[str, ...],
    secrets: tuple[str, ...],
    project: str | None,
    as_json: bool,
) -> None:
    """Create connection NAME, e.g. --kind postgresql --option host=db --option database=crm
    --option user=reader --secret password=CRM_PASSWORD. Test it with 'connections test NAME'."""
    body = {
        "name": name,
        "kind": kind,
        "options": parse_pairs("--option", options),
        "secrets": parse_pairs("--secret", secrets),
    }
    client = connect()
    base, shown = in_project(client, project, "connections")
    answer = client.call("POST", base, body)
    if as_json:
        print_json(answer["connection"])
        return
    click.echo(
        f"created connection {name} ({kind}) in project {shown}; check it with "
        f"'modelyard connections test {name}'"
    )


@connections.command("update")
@click.argument("name")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set an option (repeatable); the others are kept.",
)
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove an option.")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="CREDENTIAL=SECRET",
    help="Name the secret of a credential (repeatable); the others are kept.",
)
@project_option()
@json_option("Print the changed connection as JSON.")
def update(
    name: str,
    options: tuple[str, ...],
    unset: tuple[str, ...],
    secrets: tuple[str, ...],
    project: str | None,
    as_json: bool,
) -> None:
    """Change connection NAME's options or secrets (its kind stays)."""
    if not (options or unset or secrets):
        raise InvalidInput(
            "nothing to change; expected --option KEY=VALUE, --unset KEY or "
            "--secret CREDENTIAL=SECRET"
        )
    client = connect()
    base, shown = in_project(client, project, "connections")
    path = f"{base}/{quote(name, safe='')}"
    found = client.call("GET", path)["connection"]
    body: dict[str, Any] = {}
    if options or unset:
        merged = {**found["options"], **parse_pairs("--option", options)}
        body["options"] = {k: v for k, v in merged.items() if k not in unset}
    if secrets:
        body["secrets"] = {**found["secrets"], **parse_pairs("--secret", secrets)}
    answer = client.call("PATCH", path, body)
    if as_json:
        print_json(answer["connection"])
        return
    click.echo(f"changed connection {name} in project {shown}")


@connections.command("list")
@project_option()
@json_option()
def list_connections(project: str | None, as_json: bool) -> None:
    """The project's connections: name, kind, where they point, which secrets they use."""
    client = connect()
    base, shown = in_project(client, project, "connections")
    answer = client.call("GET", base)
    if as_json:
        print_json(answer)
        return
    rows = [
        [c["name"], c["kind"], _where(c), ",".join(sorted(c["secrets"].values())), c["updated_ms"]]
        for c in answer["connections"]
    ]
    print_rows(f"Connections of {shown}", _COLUMNS, rows)


@connections.command("show")
@click.argument("name")
@project_option()
@json_option()
def show(name: str, project: str | None, as_json: bool) -> None:
    """Connection NAME: kind, options, and the secrets holding its credentials (names only)."""
    client = connect()
    base, _ = in_project(client, project, "connections")
    found = client.call("GET", f"{base}/{quote(name, safe='')}")["connection"]
    if as_json:
        print_json(found)
        return
    flat = {
        "name": found["name"],
        "kind": found["kind"],
        "project": found["project"],
        **{f"option {k}": v for k, v in found["options"].items()},
        **{f"secret {k}": v for k, v in found["secrets"].items()},
        "created_by": found["created_by"],
    }
    print_mapping(f"Connection {name}", flat)


@connections.command("test")
@click.argument("name")
@project_option()
@json_option('Print {"connection", "kind", "ok", "detail"} as JSON.')
def try_connection(name: str, project: str | None, as_json: bool) -> None:
    """Have the server connect with the project's secrets and say what it found, or exactly why
    not (refused, unknown host, bad credentials...). Exits 1 when it could not connect."""
    client = connect()
    base, _ = in_project(client, project, "connections")
    answer = client.call("POST", f"{base}/{quote(name, safe='')}/test", {})
    if as_json:
        print_json(answer)
    else:
        click.echo(f"{'ok' if answer['ok'] else 'failed'}: {answer['detail']}")
    if not answer["ok"]:
        raise SystemExit(1)


@connections.command("delete")
@click.argument("name")
@project_option()
@json_option('Print {"deleted": NAME, "project": owner/name} as JSON.')
def delete(name: str, project: str | None, as_json: bool) -> None:
    """Delete connection NAME (monitors that read through it fail until it exists again)."""
    delete_in_project(project, "connections", "connection", name, as_json)
