"""``modelyard alerts``: alerts raised by monitors."""

from __future__ import annotations

import click

from modelyard.cli.names import resolve
from modelyard.cli.output import json_option, print_json, print_rows

__all__ = ["alerts"]

_COLUMNS = (
    "id",
    "monitor",
    "rule",
    "state",
    "value",
    "first_window_start_ms",
    "last_window_end_ms",
    "fired_ms",
    "resolved_ms",
)


@click.command()
@click.option("--all", "all_states", is_flag=True, help="Resolved alerts too, not only firing.")
@click.option("--monitor", default=None, help="Only this monitor's alerts.")
@click.option(
    "--deployment",
    default=None,
    help="Only this deployment's alerts: its CRN, or a model name (its active deployment).",
)
@json_option()
def alerts(all_states: bool, monitor: str | None, deployment: str | None, as_json: bool) -> None:
    """Alerts of monitors, newest first (firing only unless --all)."""
    from modelyard.monitors import list_alerts

    if deployment is not None:
        deployment = resolve(deployment, "deployment", "--deployment")
    found = list_alerts(all_states=all_states, monitor=monitor, deployment_crn=deployment)
    if as_json:
        print_json(found)
        return
    title = "Alerts" if all_states else "Firing alerts"
    print_rows(title, _COLUMNS, [[a[c] for c in _COLUMNS] for a in found])
