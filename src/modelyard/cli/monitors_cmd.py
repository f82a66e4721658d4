"""``modelyard monitors``: run a monitor spec, show its label imports, upload and list reference
samples."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelyard.cli.config import project_option
from modelyard.cli.output import print_json, print_mapping, print_rows

if TYPE_CHECKING:
    from modelyard.monitors import WindowResult

__all__ = ["monitors"]

_SHOWN = ("n", "label_coverage", "roc_auc", "estimated_roc_auc", "drift.flagged")
_ROWS = 10  # windows listed by `monitors run` (the rest are counted in the title)


@click.group()
def monitors() -> None:
    """Compute accuracy, drift and label coverage per window, and manage references."""


@monitors.command("run")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--window",
    default=None,
    metavar="START..END",
    help="Recompute only the windows overlapping START..END (epoch ms, ISO 8601, or 3d..1d).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")
def run_command(spec: Path, window: str | None, as_json: bool) -> None:
    """Compute the due windows of the monitor SPEC (a YAML file) and evaluate its alerts.

    A window that has not ended is stored partial and computed again by the first run after it
    closes; windows without predictions are counted, not stored. The table lists the last 10
    windows with predictions; --json prints every window.
    """
    from modelyard.monitors import run_monitor
    from modelyard.monitors.run import parse_window
    from modelyard.specs.monitor import MonitorSpec

    loaded = MonitorSpec.from_yaml(spec)
    results = run_monitor(
        loaded,
        window=parse_window(window) if window else None,
        warn=lambda message: click.echo(f"warning: {message}", err=True),
    )
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    title, results = _summary(loaded.name, results)
    from modelyard.monitors.extra_groups import shown_keys

    shown = [*_SHOWN, *shown_keys(loaded)]  # the largest segment gap, the domain AUC
    rows = [
        [r.start_ms, r.end_ms, r.reason, _state(r), *(r.metrics.get(k) for k in shown)]
        for r in results
    ]
    print_rows(title, ["start_ms", "end_ms", "reason", "state", *shown], rows)


def _state(result: WindowResult) -> str:
    if result.partial:
        return "partial: open, computed again once it closes"
    if not result.written:
        return "kept: the stored result came from more data"
    return "complete"


def _summary(name: str, results: list[WindowResult]) -> tuple[str, list[WindowResult]]:
    """The title (counts of complete, partial and empty windows) and the rows worth a line: the
    windows with predictions, the last ``_ROWS`` of them (``--json`` prints every window)."""
    from modelyard.cli.output import format_time

    full = [r for r in results if not r.empty]
    partial = [r for r in full if r.partial]
    parts = [f"{len(full) - len(partial)} complete"]
    if partial:
        closes = format_time(partial[-1].end_ms)
        parts.append(
            f"{len(partial)} partial (still open until {closes}: stored marked partial and "
            "computed again by the first run after it closes)"
        )
    empty = len(results) - len(full)
    if empty:
        parts.append(f"{empty} empty (no predictions: no aggregate record written)")
    title = f"Monitor {name}: {len(results)} window(s) computed: {', '.join(parts)}"
    shown = full[-_ROWS:]
    if len(shown) < len(results):
        title += f"; showing the last {len(shown)} with predictions (--json prints all)"
    return title, shown


@monitors.command("labels")
@click.argument("name")
@click.option(
    "--deployment",
    required=True,
    help="The deployment the monitor watches: its CRN, or a model name (its active deployment).",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")
def labels_command(name: str, deployment: str, limit: int, as_json: bool) -> None:
    """The label imports of monitor NAME (its spec's labels: source), newest first: rows read,
    matched, unmatched (with a sample of ids), duplicates, or the error that stopped one."""
    from modelyard.cli.names import resolve
    from modelyard.monitors.open_access import open_access

    deployment = resolve(deployment, "deployment", "--deployment")
    found = open_access(None).label_imports(name, deployment, limit)
    if as_json:
        print_json([r.to_dict() for r in found])
        return
    columns = ["started_ms", "connection", "rows_read", "matched", "unmatched", "duplicates"]
    rows = [[*(getattr(r, c) for c in columns), r.error or ""] for r in found]
    print_rows(f"Label imports of {name}", [*columns, "error"], rows)


@monitors.group()
def reference() -> None:
    """Reference samples (training data) that windows are compared with."""


@reference.command("upload")
@click.option(
    "--deployment",
    required=True,
    help="Deployment the sample belongs to: its CRN, or a model name (its active deployment).",
)
@click.option("--name", default="training", show_default=True, help="Name of the sample.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")
def upload(deployment: str, name: str, file: Path, as_json: bool) -> None:
    """Store FILE (CSV with a header row) as a reference; at most 100,000 rows are kept."""
    import pandas as pd

    from modelyard.cli.names import resolve
    from modelyard.errors import InvalidInput
    from modelyard.monitors import upload_reference

    deployment = resolve(deployment, "deployment", "--deployment")
    try:
        frame = pd.read_csv(file)
    except (ValueError, OSError) as exc:
        raise InvalidInput(
            f"{file} is not a readable CSV file ({exc}); give a CSV with a header row"
        ) from exc
    info = upload_reference(frame, deployment, name)
    if as_json:
        print_json(info)
    else:
        print_mapping(f"Reference {name}", info)


@reference.command("list")
@click.option(
    "--deployment",
    default=None,
    help="Only this deployment's samples: its CRN, or a model name (its active deployment).",
)
@project_option(listing=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")
def list_command(
    deployment: str | None, project: str | None, all_projects: bool, as_json: bool
) -> None:
    """Stored reference samples (without their data)."""
    from modelyard.cli.alerts_cmd import project_deployments
    from modelyard.cli.names import resolve
    from modelyard.monitors import list_references

    if deployment is not None:
        deployment = resolve(deployment, "deployment", "--deployment")
    found = list_references(deployment)
    keep = project_deployments(project, all_projects)
    if keep is not None:
        found = [r for r in found if keep(r["deployment_crn"])]
    if as_json:
        print_json(found)
        return
    columns = ["deployment_crn", "name", "rows", "total_rows", "columns", "created_ms"]
    print_rows("References", columns, [[r[c] for c in columns] for r in found])
