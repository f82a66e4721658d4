"""``modelyard projects``: projects, who may do what in them, and the CLI's default project.

A project is named as everywhere: its name (when exactly one project you can see has it),
``owner/name``, its uuid or its CRN. Commands that name one in a URL path look it up first
(``GET /api/v1/projects?name=``) and send its uuid, since ``owner/name`` and CRNs hold a ``/``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from modelyard.cli.client import Client, connect
from modelyard.cli.config import config_path, default_project, set_default_project
from modelyard.cli.output import json_option, print_json, print_mapping, print_rows
from modelyard.errors import InvalidInput, NotFound

__all__ = ["delete_in_project", "find_project", "in_project", "projects"]

_JSON = json_option()
_ROLES = ["viewer", "operator", "contributor", "admin"]
_COLUMNS = ["full_name", "role", "description", "crn", "created_ms"]
# The server's default project (``people.bootstrap``): owned by the first user, ``admin``.
_SERVER_DEFAULT = "admin/default"


def find_project(client: Client, ref: str) -> dict[str, Any]:
    """The one project ``ref`` names among those the caller can see; NotFound naming the ones
    they can see, InvalidInput listing the candidates when a bare name is ambiguous."""
    found = client.call("GET", "/api/v1/projects", params={"name": ref})["projects"]
    if len(found) == 1:
        return dict(found[0])
    if found:
        names = ", ".join(sorted(p["full_name"] for p in found))
        raise InvalidInput(
            f"project {ref!r} is ambiguous: {len(found)} projects you can see have that name "
            f"({names}); give owner/name"
        )
    every = client.call("GET", "/api/v1/projects")["projects"]
    known = ", ".join(sorted(p["full_name"] for p in every)) or "none"
    raise NotFound(
        f"no project {ref!r} among the projects you can see ({known}); name one as name, "
        "owner/name, uuid or CRN, or create it with 'modelyard projects create'"
    )


def in_project(client: Client, project: str | None, collection: str) -> tuple[str, str]:
    """``/api/v1/projects/<uuid>/<collection>`` of the chosen project (``--project``, else the
    CLI's default project, else the server's), and its ``owner/name``."""
    chosen = project if project is not None else default_project() or _SERVER_DEFAULT
    found = find_project(client, chosen)
    uuid = str(found["crn"]).rsplit("/", 1)[-1]
    return f"/api/v1/projects/{quote(uuid, safe='')}/{collection}", str(
        found.get("full_name", chosen)
    )


def delete_in_project(
    project: str | None, collection: str, noun: str, name: str, as_json: bool
) -> None:
    """Delete ``name`` from the project's ``collection`` and say so (``{"deleted", "project"}``
    with ``as_json``)."""
    client = connect()
    base, shown = in_project(client, project, collection)
    client.call("DELETE", f"{base}/{quote(name, safe='')}")
    if as_json:
        print_json({"deleted": name, "project": shown})
        return
    click.echo(f"deleted {noun} {name} from project {shown}")


def _path(client: Client, ref: str, *rest: str) -> str:
    uuid = str(find_project(client, ref)["crn"]).rsplit("/", 1)[-1]
    return "/api/v1/projects/" + "/".join(quote(p, safe="") for p in (uuid, *rest))


def _principal(user: str | None, team: str | None) -> tuple[str, str]:
    if (user is None) == (team is None):
        raise InvalidInput(
            f"give exactly one of --user and --team (got {'both' if user else 'neither'})"
        )
    return ("user", user) if user is not None else ("team", str(team))


@click.group()
def projects() -> None:
    """Projects own models, jobs, monitors, alerts and secrets; share them with roles."""


@projects.command()
@click.argument("name")
@click.option("--description", default="", help="What the project is for.")
@click.option("--owner", default=None, help="Owning user (default: you; others: server admins).")
@_JSON
def create(name: str, description: str, owner: str | None, as_json: bool) -> None:
    """Create project NAME, owned by you (you are its admin)."""
    body: dict[str, Any] = {"name": name, "description": description}
    if owner is not None:
        body["owner"] = owner
    project = connect().call("POST", "/api/v1/projects", body)["project"]
    if as_json:
        print_json(project)
    else:
        print_mapping(f"Project {project['full_name']}", project)


@projects.command("list")
@click.option("--name", default=None, help="Only projects of this name (or owner/name).")
@_JSON
def list_projects(name: str | None, as_json: bool) -> None:
    """The projects you can see, with your role in each (* marks the default project)."""
    params = None if name is None else {"name": name}
    found = connect().call("GET", "/api/v1/projects", params=params)["projects"]
    if as_json:
        print_json(found)
        return
    chosen = default_project()
    rows = []
    for p in found:
        mark = "*" if chosen in (p["name"], p["full_name"], p["crn"]) else ""
        rows.append([mark, *(p.get(c) for c in _COLUMNS)])
    print_rows("Projects", ["default", *_COLUMNS], rows)


@projects.command()
@click.argument("name")
@_JSON
def show(name: str, as_json: bool) -> None:
    """A project: its owner, your role, collaborators, models and jobs."""
    client = connect()
    view = client.call("GET", _path(client, name))
    if as_json:
        print_json(view)
        return
    project = view["project"]
    shown = {
        **project,
        "collaborators": ", ".join(
            f"{c['name']} ({c['kind']}): {c['role']}" for c in view["collaborators"]
        ),
        "models": ", ".join(view["models"]) or "none",
        "jobs": ", ".join(view["jobs"]) or "none",
    }
    print_mapping(f"Project {project['full_name']}", shown)


@projects.command()
@click.argument("name")
@_JSON
def delete(name: str, as_json: bool) -> None:
    """Delete an empty project (move or delete its models and jobs first)."""
    client = connect()
    answer = client.call("DELETE", _path(client, name))
    if as_json:
        print_json(answer)
    else:
        click.echo(f"deleted project {answer['deleted']}")


@projects.command()
@click.argument("name")
@_JSON
def collaborators(name: str, as_json: bool) -> None:
    """Who has which role in a project (the owner is always admin)."""
    client = connect()
    found = client.call("GET", _path(client, name, "collaborators"))["collaborators"]
    if as_json:
        print_json(found)
        return
    columns = ["kind", "name", "role", "added_ms"]
    print_rows(f"Collaborators of {name}", columns, [[c.get(k) for k in columns] for c in found])


@projects.command()
@click.argument("name")
@click.option("--user", default=None, help="Give this user the role.")
@click.option("--team", default=None, help="Give this team (every member) the role.")
@click.option("--role", type=click.Choice(_ROLES), required=True, help="The role to give.")
@_JSON
def share(name: str, user: str | None, team: str | None, role: str, as_json: bool) -> None:
    """Give a user or a team a role in a project (needs admin in it); replaces their role."""
    kind, who = _principal(user, team)
    client = connect()
    path = _path(client, name, "collaborators", kind, who)
    found = client.call("PUT", path, {"role": role})["collaborator"]
    if as_json:
        print_json(found)
    else:
        click.echo(f"{kind} {who} is {found['role']} in project {name}")


@projects.command()
@click.argument("name")
@click.option("--user", default=None, help="Take this user's role away.")
@click.option("--team", default=None, help="Take this team's role away.")
@_JSON
def unshare(name: str, user: str | None, team: str | None, as_json: bool) -> None:
    """Take a user's or a team's role away (the last admin stays)."""
    kind, who = _principal(user, team)
    client = connect()
    answer = client.call("DELETE", _path(client, name, "collaborators", kind, who))
    if as_json:
        print_json(answer)
    else:
        click.echo(f"{kind} {who} has no role of its own in project {name} now")


@projects.command()
@click.argument("name", required=False)
@click.option("--clear", is_flag=True, help="Forget the default project.")
@click.option("--json", "as_json", is_flag=True, help='Print {"project": ..., "config": ...}.')
def use(name: str | None, clear: bool, as_json: bool) -> None:
    """Make NAME the default project of every --project (kept in the CLI config); without NAME,
    print the default project."""
    if clear and name is not None:
        raise InvalidInput(f"NAME {name!r} and --clear disagree; give one of them")
    if clear:
        path, chosen = set_default_project(None), None
    elif name is None:
        path, chosen = config_path(), default_project()
    else:
        chosen = find_project(connect(), name)["full_name"]
        path = set_default_project(chosen)
    if as_json:
        print_json({"project": chosen, "config": str(path)})
    elif chosen is None:
        click.echo(f"no default project ({path}); set one with 'modelyard projects use NAME'")
    else:
        click.echo(f"default project: {chosen} ({path})")
