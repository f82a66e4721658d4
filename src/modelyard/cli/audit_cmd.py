"""``modelyard audit``: the server's audit log, newest first (``GET /api/v1/audit``).

Server administrators read every entry; a project's admins read that project's with
``--project`` (or the default project of ``modelyard projects use``). ``--all-projects`` asks for
the whole log even when a default project is set.
"""

from __future__ import annotations

import click

from modelyard.cli.client import connect
from modelyard.cli.config import project_option, project_params
from modelyard.cli.output import json_option, print_json, print_rows

__all__ = ["audit"]

_COLUMNS = ("at_ms", "actor", "action", "object", "project", "outcome", "status", "address")


@click.command()
@project_option(listing=True)
@click.option("--user", default=None, help="Only this actor's entries (a user name, key:<id>).")
@click.option(
    "--since", default=None, help="From this time: 7d or 2h (ago), ISO 8601, or epoch ms."
)
@click.option("--until", default=None, help="Before this time (same forms as --since).")
@click.option(
    "--action", default=None, help="Only this action (models.deploy), or a group (models)."
)
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=100, show_default=True, help="At most."
)
@click.option("--before", type=int, default=None, help="Older than this seq (the next page).")
@json_option()
def audit(  # noqa: PLR0913 - one per filter of the route, as click passes them
    project: str | None,
    all_projects: bool,
    user: str | None,
    since: str | None,
    until: str | None,
    action: str | None,
    limit: int,
    before: int | None,
    as_json: bool,
) -> None:
    """Who changed what, when, from where, and how it ended (newest first).

    Server administrators see every entry; a project's admins see that project's (--project).
    """
    params: dict[str, str | int] = {**project_params(project, all_projects), "limit": limit}
    for name, value in (("user", user), ("since", since), ("until", until), ("action", action)):
        if value is not None:
            params[name] = value
    if before is not None:
        params["before"] = before
    answer = connect().call("GET", "/api/v1/audit", params=params)
    entries = answer["entries"]
    if as_json:
        print_json(answer)
        return
    print_rows("Audit log", _COLUMNS, [[e.get(c) for c in _COLUMNS] for e in entries])
    if answer.get("next_before") is not None:
        click.echo(f"more entries: --before {answer['next_before']}", err=True)
