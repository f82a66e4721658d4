"""The CLI's own settings file, and the ``--project`` option every command shares.

The file is ``$MODELYARD_CONFIG`` or ``~/.config/modelyard/config.json``: a JSON object, mode
0600 (it names what you work on; it holds no key). Today it keeps one thing, the default
project (``modelyard projects use NAME``), which every ``--project`` falls back to; without one,
the server decides (its ``default`` project for new things, every project you can see in lists).

``--project`` names a Modelyard project, as the server does: its name (when exactly one project
you can see has it), ``owner/name``, its uuid or its CRN. It is sent as ``?project=`` and the
server resolves it, so the CLI needs no list of projects. It used to name the folder to deploy;
that is ``--project-dir`` now, and an existing folder given to ``--project`` is refused with
that advice rather than sent as a project name nobody has.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from modelyard import settings
from modelyard.errors import InvalidInput, ModelyardError

if TYPE_CHECKING:
    from modelyard.client import Client

__all__ = [
    "FOLDER_ADVICE",
    "config_path",
    "default_project",
    "load",
    "project_names",
    "project_option",
    "project_params",
    "save",
    "set_default_project",
]

F = TypeVar("F", bound=Callable[..., Any])

FOLDER_ADVICE = (
    "--project names a Modelyard project (a name, owner/name or CRN); the folder to deploy goes "
    "in --project-dir"
)
_PROJECT_HELP = (
    "Modelyard project: a name, owner/name, uuid or CRN (default: 'modelyard projects use', "
    "else the server's default project)."
)
_LIST_HELP = (
    "Only this Modelyard project's: a name, owner/name, uuid or CRN (default: 'modelyard "
    "projects use', else every project you can see)."
)


def config_path() -> Path:
    """Where the CLI's settings live (``MODELYARD_CONFIG``, or its default)."""
    return Path(os.path.expanduser(str(settings.get("cli_config"))))


def load() -> dict[str, Any]:
    """The settings file's object; empty when there is no file yet."""
    path = config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInput(
            f"the CLI config {str(path)!r} cannot be read ({exc.strerror}); fix its permissions "
            "or point MODELYARD_CONFIG at another file"
        ) from None
    try:
        found = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"the CLI config {str(path)!r} is not JSON ({exc}); expected an object such as "
            '{"project": "alice/churn"}; fix or delete it'
        ) from None
    if not isinstance(found, dict):
        raise InvalidInput(
            f"the CLI config {str(path)!r} holds {type(found).__name__}, not an object; expected "
            'an object such as {"project": "alice/churn"}; fix or delete it'
        )
    return found


def save(values: dict[str, Any]) -> Path:
    """Write ``values`` as the settings file: created 0600 (its folder 0700), replaced whole so
    a reader never sees half of it."""
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a crashed write's leftover would keep its own mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(orjson.dumps(values, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)
    return path


def default_project() -> str | None:
    """The project ``modelyard projects use`` chose, or None."""
    found = load().get("project")
    return found if isinstance(found, str) and found else None


def set_default_project(project: str | None) -> Path:
    """Remember ``project`` (None: forget it); the file's other settings stay."""
    values = load()
    if project is None:
        values.pop("project", None)
    else:
        values["project"] = project
    return save(values)


def _not_a_folder(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A folder given to ``--project`` is the old meaning of the flag: say where it goes now."""
    if value is None:
        return None
    if not value.strip():
        raise InvalidInput(
            "--project is empty; give a project name, owner/name, uuid or CRN, or leave it out"
        )
    # Only what can be no project reference is taken for the old meaning: a path written as one
    # (/srv/churn, ./churn, ../churn, ~/churn, churn/). A bare name is a project's, even with a
    # folder of that name here (people name folders after their projects).
    written_as_path = value.startswith(("/", ".", "~")) or value.endswith(("/", os.sep))
    if written_as_path and os.path.isdir(os.path.expanduser(value)):
        raise InvalidInput(f"--project {value!r} is a folder here; {FOLDER_ADVICE}")
    return value


def project_option(listing: bool = False) -> Callable[[F], F]:
    """``--project`` (parameter ``project``); for lists (``listing``) also ``--all-projects``
    (parameter ``all_projects``), which ignores the default project."""

    def decorate(fn: F) -> F:
        if listing:
            fn = click.option(
                "--all-projects",
                "all_projects",
                is_flag=True,
                help="Every project you can see, whatever the default project.",
            )(fn)
        return click.option(
            "--project",
            "project",
            default=None,
            metavar="PROJECT",
            callback=_not_a_folder,
            help=_LIST_HELP if listing else _PROJECT_HELP,
        )(fn)

    return decorate


def project_params(project: str | None, all_projects: bool = False) -> dict[str, str]:
    """The query parameters for ``--project`` (the default project when not given; nothing with
    ``--all-projects``, which may not be combined with ``--project``)."""
    if all_projects:
        if project is not None:
            raise InvalidInput(
                f"--project {project!r} and --all-projects disagree; give one of them"
            )
        return {}
    chosen = project if project is not None else default_project()
    return {} if chosen is None else {"project": chosen}


def project_names(client: Client) -> dict[str, str]:
    """``owner/name`` of each project the caller can see, by CRN, for tables (which show names,
    not CRNs); empty when the server cannot say (a table then shows the CRN)."""
    try:
        found = client.call("GET", "/api/v1/projects")["projects"]
    except ModelyardError:
        return {}
    return {str(p["crn"]): str(p["full_name"]) for p in found}
