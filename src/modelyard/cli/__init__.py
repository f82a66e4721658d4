"""The ``modelyard`` command: parsing arguments and printing, nothing more.

Built on click (stable public API, and the reference page is generated from its command tree).
"""

from __future__ import annotations

import os
import sys

import click

from modelyard.cli import (
    alerts_cmd,
    audit_cmd,
    cluster_cmd,
    connections_cmd,
    demo_cmd,
    experiments_cmd,
    export_cmd,
    jobs_cmd,
    keys_cmd,
    metrics_cmd,
    models_cmd,
    monitors_cmd,
    projects_cmd,
    secrets_cmd,
    server_cmd,
    store_cmd,
    teams_cmd,
    users_cmd,
)
from modelyard.cli.output import error, json_option, print_json, print_rows
from modelyard.errors import ModelyardError
from modelyard.version import package_version

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """Modelyard: record every prediction, join late ground truth, monitor models.

    \b
    Output: tables on a terminal (times in your local time zone, ISO 8601); when stdout is
    not a terminal, plain tab-separated rows with a header line (the title goes to stderr);
    --json on any command that prints a table gives the complete answer as JSON, times as
    epoch milliseconds. Identifiers are never cut short.
    Models, deployments and builds can be named by model name or CRN; runs and builds also
    by an unambiguous prefix of their id (at least 4 characters), as git does.
    --project names a Modelyard project (name, owner/name, uuid or CRN); without it, the
    default project of 'modelyard projects use' (kept in $MODELYARD_CONFIG), else the
    server's default project.
    """


cli.add_command(store_cmd.store)
cli.add_command(metrics_cmd.metrics)
cli.add_command(demo_cmd.demo)
cli.add_command(server_cmd.server)
cli.add_command(models_cmd.models)
cli.add_command(keys_cmd.keys)
cli.add_command(monitors_cmd.monitors)
cli.add_command(alerts_cmd.alerts)
cli.add_command(audit_cmd.audit)
cli.add_command(jobs_cmd.jobs)
cli.add_command(experiments_cmd.experiments)
cli.add_command(projects_cmd.projects)
cli.add_command(users_cmd.users)
cli.add_command(teams_cmd.teams)
cli.add_command(secrets_cmd.secrets)
cli.add_command(connections_cmd.connections)
cli.add_command(export_cmd.export)
cli.add_command(cluster_cmd.cluster)


@cli.command()
def version() -> None:
    """Print the installed Modelyard version."""
    click.echo(package_version())


@cli.command("settings")
@json_option()
def show_settings(as_json: bool) -> None:
    """List every setting: its environment variable, default and current value."""
    from modelyard.settings import SETTINGS

    rows = [
        {
            "name": s.name,
            "env": s.env,
            "default": s.default,
            "value": "***" if s.secret and os.environ.get(s.env) else os.environ.get(s.env),
            "help": s.help,
        }
        for s in SETTINGS.values()
    ]
    if as_json:
        print_json(rows)
    else:
        columns = ["name", "env", "default", "value", "help"]
        print_rows("Settings", columns, [[r[c] for c in columns] for r in rows])


def main(argv: list[str] | None = None) -> None:
    """Entry point: a Modelyard error becomes one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="modelyard", standalone_mode=False)
    except ModelyardError as exc:
        error(exc.message)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
