"""``modelyard demo``: the main job (the churn story of ``modelyard.demo.story``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

__all__ = ["demo"]


@click.command()
@click.option("--quick", is_flag=True, help="Shorter windows and fewer of them (under a minute).")
@click.option(
    "--serve", is_flag=True, help="Keep the server up afterwards and print the dashboard URL."
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("modelyard-demo"),
    show_default=True,
    help="The demo's home (database, keys, project, CRM, report); kept afterwards. "
    "A previous demo's home is replaced.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),  # numpy's generators take no negative seed
    default=7,
    show_default=True,
    help="Seed of the customers (0 or more).",
)
def demo(quick: bool, serve: bool, home: Path, seed: int) -> None:
    """Tell the churn story end to end and write an HTML report.

    A server on 127.0.0.1 with a fresh home, a churn model with 2 replicas, a web app calling
    it, churn arriving late, a monitoring job every few seconds, drift injected midway and an
    alert to a local webhook. Stops its processes on exit and on Ctrl-C; exit status 1 if one
    of the story's checks failed.
    """
    from modelyard.demo import DEFAULT, QUICK, run_story

    config = dataclasses.replace(QUICK if quick else DEFAULT, seed=seed)
    try:
        results = run_story(home, config, serve=serve)
    except KeyboardInterrupt:
        click.echo("interrupted; the demo's processes are stopped", err=True)
        raise SystemExit(130) from None
    if not all(results.checks().values()):
        raise SystemExit(1)
