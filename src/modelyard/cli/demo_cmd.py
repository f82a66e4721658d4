"""``modelyard demo``: the main job."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["demo"]


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("modelyard-demo"),
    show_default=True,
    help="Folder for the demo's store; kept afterwards.",
)
@click.option(
    "--predictions",
    type=click.IntRange(min=10),
    default=2000,
    show_default=True,
    help="How many predictions the simulated app makes.",
)
@click.option("--quick", is_flag=True, help="A smaller run, for tests.")
def demo(home: Path, predictions: int, quick: bool) -> None:
    """Run the churn tour: predict, record, join ground truth, compute ROC AUC, read back."""
    from modelyard.demo import run_sdk_tour

    result = run_sdk_tour(home.resolve(), predictions=200 if quick else predictions)
    click.echo(
        f"done in {result.seconds:.1f}s; look inside with:\n"
        f"  MODELYARD_HOME={result.home} .venv/bin/modelyard store info\n"
        f"  MODELYARD_HOME={result.home} .venv/bin/modelyard metrics read "
        f"--deployment {result.deployment_crn} --since 1h"
    )
