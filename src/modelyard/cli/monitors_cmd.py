"""``modelyard monitors``: run a monitor spec, upload and list reference samples."""

from __future__ import annotations

from pathlib import Path

import click

from modelyard.cli.output import print_json, print_mapping, print_rows

__all__ = ["monitors"]

_SHOWN = ("n", "label_coverage", "roc_auc", "estimated_roc_auc", "drift.flagged")


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
    """Compute the due windows of the monitor SPEC (a YAML file) and evaluate its alerts."""
    from modelyard.monitors import MonitorSpec, run_monitor
    from modelyard.monitors.run import parse_window

    loaded = MonitorSpec.from_yaml(spec)
    results = run_monitor(loaded, window=parse_window(window) if window else None)
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    rows = [[r.start_ms, r.end_ms, r.reason, *(r.metrics.get(k) for k in _SHOWN)] for r in results]
    print_rows(
        f"Monitor {loaded.name}: {len(results)} window(s)",
        ["start_ms", "end_ms", "reason", *_SHOWN],
        rows,
    )


@monitors.group()
def reference() -> None:
    """Reference samples (training data) that windows are compared with."""


@reference.command("upload")
@click.option("--deployment", required=True, help="Deployment CRN the sample belongs to.")
@click.option("--name", default="training", show_default=True, help="Name of the sample.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")
def upload(deployment: str, name: str, file: Path, as_json: bool) -> None:
    """Store FILE (CSV with a header row) as a reference; at most 100,000 rows are kept."""
    import pandas as pd

    from modelyard.errors import InvalidInput
    from modelyard.monitors import upload_reference

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
@click.option("--deployment", default=None, help="Only this deployment's samples.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")
def list_command(deployment: str | None, as_json: bool) -> None:
    """Stored reference samples (without their data)."""
    from modelyard.monitors import list_references

    found = list_references(deployment)
    if as_json:
        print_json(found)
        return
    columns = ["deployment_crn", "name", "rows", "total_rows", "columns", "created_ms"]
    print_rows("References", columns, [[r[c] for c in columns] for r in found])
