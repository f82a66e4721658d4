"""``modelyard users``: the people who sign in (server admins create, disable and enable them).

Passwords never go on the command line, where ``ps`` and shell history would keep them: they
are read from a prompt (typed twice, not shown) or, for scripts, from the first line of stdin
(``--password-stdin``).
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote

import click

from modelyard.cli.client import connect
from modelyard.cli.output import json_option, print_json, print_mapping, print_rows
from modelyard.errors import InvalidInput

__all__ = ["users"]

_JSON = json_option()
_COLUMNS = ["name", "email", "is_admin", "disabled_ms", "has_password", "created_ms", "id"]
_STDIN_HELP = "Read the password from the first line of stdin (for scripts)."


def _path(name: str, *rest: str) -> str:
    return "/api/v1/users/" + "/".join(quote(p, safe="") for p in (name, *rest))


def _stdin_password() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise InvalidInput(
            "--password-stdin read no password (stdin was empty); pipe the password in, e.g. "
            "'printf %s \"$PW\" | modelyard users create NAME --password-stdin'"
        )
    return line


def _interactive() -> bool:
    isatty = getattr(sys.stdin, "isatty", None)
    return bool(isatty and isatty())


def _prompted(text: str, allow_empty: bool = False) -> str:
    """A password typed twice, not shown (empty only when ``allow_empty``)."""
    default = "" if allow_empty else None
    return str(
        click.prompt(
            text, hide_input=True, confirmation_prompt=True, default=default, show_default=False
        )
    )


@click.group()
def users() -> None:
    """Create, list, disable and enable users; set passwords (server admins)."""


@users.command()
@click.argument("name")
@click.option("--email", default=None, help="The user's e-mail address.")
@click.option("--admin", is_flag=True, help="A server admin: everything, in every project.")
@click.option("--password-stdin", is_flag=True, help=_STDIN_HELP)
@click.option("--no-password", is_flag=True, help="Ask for no password (keys only, for now).")
@_JSON
def create(
    name: str,
    email: str | None,
    admin: bool,
    password_stdin: bool,
    no_password: bool,
    as_json: bool,
) -> None:
    """Create user NAME. On a terminal it asks for a password (empty: none yet); set one later
    with 'modelyard users passwd NAME'."""
    if password_stdin and no_password:
        raise InvalidInput("--password-stdin and --no-password disagree; give one of them")
    body: dict[str, Any] = {"name": name, "email": email, "admin": admin}
    password = _stdin_password() if password_stdin else None
    if password is None and not no_password and _interactive():
        password = _prompted(f"Password for {name} (empty: none yet)", allow_empty=True)
    if password:
        body["password"] = password
    user = connect().call("POST", "/api/v1/users", body)["user"]
    if as_json:
        print_json(user)
    else:
        print_mapping(f"User {user['name']}", user)


@users.command("list")
@_JSON
def list_users(as_json: bool) -> None:
    """Every user, disabled ones too."""
    found = connect().call("GET", "/api/v1/users")["users"]
    if as_json:
        print_json(found)
        return
    print_rows("Users", _COLUMNS, [[u.get(c) for c in _COLUMNS] for u in found])


@users.command()
@click.argument("name")
@_JSON
def disable(name: str, as_json: bool) -> None:
    """Disable a user: their sessions and keys stop working at once on this server."""
    user = connect().call("POST", _path(name, "disable"))["user"]
    print_json(user) if as_json else click.echo(f"disabled user {user['name']}")


@users.command()
@click.argument("name")
@_JSON
def enable(name: str, as_json: bool) -> None:
    """Enable a disabled user again."""
    user = connect().call("POST", _path(name, "enable"))["user"]
    print_json(user) if as_json else click.echo(f"enabled user {user['name']}")


@users.command()
@click.argument("name", required=False)
@click.option("--password-stdin", is_flag=True, help=_STDIN_HELP)
@_JSON
def passwd(name: str | None, password_stdin: bool, as_json: bool) -> None:
    """Set user NAME's password (server admins), or without NAME your own (asks the current
    one first)."""
    client = connect()
    if name is None:
        if password_stdin:
            raise InvalidInput(
                "--password-stdin sets another user's password (give NAME); your own is "
                "changed at the prompt, which asks the current one first"
            )
        current = str(click.prompt("Current password", hide_input=True))
        new = _prompted("New password")
        client.call("PUT", "/api/v1/me/password", {"current": current, "password": new})
        _done(None, as_json)
        return
    password = _stdin_password() if password_stdin else _prompted(f"New password for {name}")
    client.call("PUT", _path(name, "password"), {"password": password})
    _done(name, as_json)


def _done(name: str | None, as_json: bool) -> None:
    if as_json:
        print_json({"user": name, "password_set": True})
    else:
        click.echo(f"password of user {name} is set" if name else "your password is changed")
