"""``modelyard teams``: named groups of users, shared with a project like one user."""

from __future__ import annotations

from urllib.parse import quote

import click

from modelyard.cli.client import connect
from modelyard.cli.output import json_option, print_json, print_mapping, print_rows

__all__ = ["teams"]

_JSON = json_option()


def _path(team: str, *rest: str) -> str:
    return "/api/v1/teams/" + "/".join(quote(p, safe="") for p in (team, *rest))


@click.group()
def teams() -> None:
    """Create and delete teams and change their members (server admins); list them."""


@teams.command()
@click.argument("name")
@_JSON
def create(name: str, as_json: bool) -> None:
    """Create team NAME (no members yet)."""
    team = connect().call("POST", "/api/v1/teams", {"name": name})["team"]
    if as_json:
        print_json(team)
    else:
        print_mapping(f"Team {team['name']}", team)


@teams.command("list")
@_JSON
def list_teams(as_json: bool) -> None:
    """Every team with its members."""
    found = connect().call("GET", "/api/v1/teams")["teams"]
    if as_json:
        print_json(found)
        return
    rows = [[t["name"], ", ".join(t["members"]), t["created_ms"], t["id"]] for t in found]
    print_rows("Teams", ["name", "members", "created_ms", "id"], rows)


@teams.command()
@click.argument("name")
@_JSON
def delete(name: str, as_json: bool) -> None:
    """Delete a team; the roles it gave in projects go with it."""
    answer = connect().call("DELETE", _path(name))
    print_json(answer) if as_json else click.echo(f"deleted team {name}")


@teams.command("add-member")
@click.argument("team")
@click.argument("user")
@_JSON
def add_member(team: str, user: str, as_json: bool) -> None:
    """Add USER to TEAM: they get every role the team has."""
    found = connect().call("PUT", _path(team, "members", user))["team"]
    if as_json:
        print_json(found)
    else:
        click.echo(f"team {found['name']}: {', '.join(found['members'])}")


@teams.command("remove-member")
@click.argument("team")
@click.argument("user")
@_JSON
def remove_member(team: str, user: str, as_json: bool) -> None:
    """Remove USER from TEAM."""
    found = connect().call("DELETE", _path(team, "members", user))["team"]
    if as_json:
        print_json(found)
    else:
        click.echo(f"team {found['name']}: {', '.join(found['members']) or 'no members'}")
