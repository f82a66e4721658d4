"""``modelyard secrets``: a project's secrets (set, list, delete). Values go to the server and are
never printed, listed or taken as an argument.

``set NAME`` reads the value from stdin when stdin is not a terminal (``modelyard secrets set
DB_PASSWORD < password.txt``, one trailing newline dropped), else asks for it twice at a hidden
prompt. Never from the command line: arguments stay in the shell's history and are visible to
every user of the machine in the process list (``ps``), so an extra argument is refused without
being echoed. A deployment or a job gets secrets as environment variables by naming them
(``modelyard models deploy ... --secret DB_PASSWORD``, ``modelyard jobs create ... --secret``).
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote

import click

from modelyard.cli.client import connect
from modelyard.cli.config import project_option
from modelyard.cli.output import json_option, print_json, print_rows
from modelyard.cli.projects_cmd import delete_in_project, in_project
from modelyard.errors import InvalidInput

__all__ = ["read_value", "secrets"]

_COLUMNS = ["name", "set_by", "updated_ms", "created_ms"]
_NO_ARGUMENT = (
    "the value of a secret is never a command-line argument (it would stay in your shell's "
    "history and show in the process list); pipe it on stdin (modelyard secrets set NAME < "
    "file) or type it at the prompt"
)


def read_value(name: str) -> str:
    """The value of secret ``name``: stdin when it is not a terminal (one trailing newline
    dropped), else a hidden prompt asked twice."""
    if not sys.stdin.isatty():
        text = sys.stdin.read()
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            raise InvalidInput(
                f"stdin gave no value for secret {name!r}; pipe the value in, or run the "
                "command on a terminal to type it"
            )
        return text
    typed: str = click.prompt(
        f"Value of {name}", hide_input=True, confirmation_prompt=True, err=True
    )
    return typed


@click.group()
def secrets() -> None:
    """A project's secrets: encrypted values that deployments and jobs get as environment
    variables (--secret NAME on 'models deploy' and 'jobs create'). Values are never shown."""


@secrets.command("set", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name")
@project_option()
@json_option("Print the secret's name, setter and times as JSON (never its value).")
@click.pass_context
def set_secret(ctx: click.Context, name: str, project: str | None, as_json: bool) -> None:
    """Create or replace secret NAME; the value comes from stdin or a hidden prompt."""
    if ctx.args:  # never echoed: it is probably the value
        raise InvalidInput(f"{len(ctx.args)} extra argument(s) after {name!r}: {_NO_ARGUMENT}")
    client = connect()
    base, shown = in_project(client, project, "secrets")
    value = read_value(name)
    answer: dict[str, Any] = client.call("PUT", f"{base}/{quote(name, safe='')}", {"value": value})
    if as_json:
        print_json(answer["secret"])
        return
    click.echo(f"set secret {name} in project {shown}")


@secrets.command("list")
@project_option()
@json_option()
def list_secrets(project: str | None, as_json: bool) -> None:
    """The project's secrets: names, who set them and when (never values)."""
    client = connect()
    base, shown = in_project(client, project, "secrets")
    answer = client.call("GET", base)
    if as_json:
        print_json(answer)
        return
    found = answer["secrets"]
    print_rows(f"Secrets of {shown}", _COLUMNS, [[s.get(c) for c in _COLUMNS] for s in found])


@secrets.command("delete")
@click.argument("name")
@project_option()
@json_option('Print {"deleted": NAME, "project": owner/name} as JSON.')
def delete_secret(name: str, project: str | None, as_json: bool) -> None:
    """Delete secret NAME (deployments and jobs that name it fail to start until it is set)."""
    delete_in_project(project, "secrets", "secret", name, as_json)


@secrets.command("rotate-key")
@json_option('Print {"reencrypted": N} as JSON.')
def rotate_key(as_json: bool) -> None:
    """Re-encrypt every secret with the first key of MODELYARD_SECRETS_KEY (run on the server's
    machine, with the server's MODELYARD_HOME and MODELYARD_DATABASE_URL, after putting a new key
    first: MODELYARD_SECRETS_KEY=NEW,OLD). Afterwards the old key can be dropped."""
    from modelyard import settings
    from modelyard.registry import Registry, SecretBox
    from modelyard.store import open_store

    if not settings.get("secrets_key"):
        raise InvalidInput(
            "MODELYARD_SECRETS_KEY is not set; rotating re-encrypts with its first key: set it "
            "to NEW,OLD (comma-separated Fernet keys, the new one first) as the servers will use"
        )
    with open_store() as store:
        registry = Registry(store)
        registry.secrets.configure(SecretBox.for_home(settings.home()))
        count = registry.secrets.rotate()
    if as_json:
        print_json({"reencrypted": count})
        return
    click.echo(f"re-encrypted {count} secret(s) with the first key of MODELYARD_SECRETS_KEY")
