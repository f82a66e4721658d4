"""``modelyard keys``: API keys on the server (admin only). A new key is printed once."""

from __future__ import annotations

from urllib.parse import quote

import click

from modelyard.cli.client import connect
from modelyard.cli.output import json_option, print_json, print_mapping, print_rows

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (needs an admin key)."""


@keys.command()
@click.option("--name", default="key", show_default=True, help="Who or what the key is for.")
@click.option(
    "--role",
    type=click.Choice(["admin", "user", "run"]),
    default="user",
    show_default=True,
    help="admin: everything; user: call models, metrics, read models; run: metrics only.",
)
@click.option("--expires", default="365d", show_default=True, help="Lifetime, or 'never' (admin).")
@click.option(
    "--scope", default=None, help="Limit a user or run key to one model (its name or CRN)."
)
@json_option()
def create(name: str, role: str, expires: str, scope: str | None, as_json: bool) -> None:
    """Create a key; its token is printed this once (only its hash is stored)."""
    answer = connect().call(
        "POST", "/api/v1/keys", {"name": name, "role": role, "expires": expires, "scope": scope}
    )
    if as_json:
        print_json(answer)
        return
    print_mapping("API key", {**answer["key"], "token": answer["token"]})
    click.echo("Store the token now: it is not shown again.", err=True)  # stdout: data only


@keys.command("list")
@json_option()
def list_keys(as_json: bool) -> None:
    """Every key with its role, prefix, expiry and revocation."""
    found = connect().call("GET", "/api/v1/keys")["keys"]
    if as_json:
        print_json(found)
        return
    columns = ["id", "name", "role", "prefix", "scope", "expires_ms", "revoked_ms"]
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
