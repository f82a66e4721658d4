"""``modelyard keys``: API keys on the server. A new key is printed once.

A key belongs to a user and acts with that user's rights (``--user``: server admins make keys
for others; default: yours), optionally narrowed to one project (``--project``), one model
(``--scope``) and a role (``--project-role``). Narrowing only takes rights away. Run keys are
minted by the server (one per deployment and per job run), never here.
"""

from __future__ import annotations

from urllib.parse import quote

import click

from modelyard.cli.client import connect
from modelyard.cli.output import json_option, print_json, print_mapping, print_rows

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (yours; server admins: everyone's)."""


@keys.command()
@click.option("--name", default="key", show_default=True, help="Who or what the key is for.")
@click.option(
    "--role",
    type=click.Choice(["admin", "user"]),
    default="user",
    show_default=True,
    help="user: the user's project roles; admin: all the user's rights, a server admin's "
    "included (server admins only).",
)
@click.option("--expires", default="365d", show_default=True, help="Lifetime, or 'never' (admin).")
@click.option("--scope", default=None, help="Limit the key to one model (its name or CRN).")
@click.option("--user", default=None, help="Whose key (server admins only; default: yours).")
@click.option(
    "--project",
    default=None,
    metavar="PROJECT",
    help="Limit the key to one Modelyard project (name, owner/name, uuid or CRN).",
)
@click.option(
    "--project-role",
    type=click.Choice(["viewer", "operator", "contributor", "admin"]),
    default=None,
    help="The most the key may do in its projects (at most the user's own role).",
)
@json_option()
def create(as_json: bool, **options: str | None) -> None:
    """Create a key; its token is printed this once (only its hash is stored)."""
    body = {k: v for k, v in options.items() if v is not None}
    answer = connect().call("POST", "/api/v1/keys", body)
    if as_json:
        print_json(answer)
        return
    print_mapping("API key", {**answer["key"], "token": answer["token"]})
    click.echo("Store the token now: it is not shown again.", err=True)  # stdout: data only


@keys.command("list")
@click.option("--user", default=None, help="Only this user's keys (server admins).")
@json_option()
def list_keys(user: str | None, as_json: bool) -> None:
    """Your keys (server admins: every key) with role, narrowing, expiry and revocation."""
    params = None if user is None else {"user": user}
    found = connect().call("GET", "/api/v1/keys", params=params)["keys"]
    if as_json:
        print_json(found)
        return
    columns = ["id", "name", "role", "user_id", "project_crn", "project_role", "scope"]
    columns += ["expires_ms", "revoked_ms"]
    print_rows("API keys", columns, [[k.get(c) for c in columns] for k in found])


@keys.command()
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help="Print the revoked key as JSON.")
def revoke(key_id: str, as_json: bool) -> None:
    """Revoke a key by id; it stops working at once on this server."""
    answer = connect().call("DELETE", "/api/v1/keys/" + quote(key_id, safe=""))
    if as_json:
        print_json(answer)
    else:
        click.echo(f"revoked key {key_id}")
