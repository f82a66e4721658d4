"""``modelyard metrics``: read tracked records from the terminal."""

from __future__ import annotations

import sys

import click

from modelyard.cli.output import print_json, print_mapping, print_rows
from modelyard.errors import InvalidInput
from modelyard.timeparse import parse_time_ms

__all__ = ["metrics"]

_TABLE_ROWS = 20
_TIME_HELP = "epoch ms, ISO 8601, 'now', or a duration before now such as 2h"


@click.group()
def metrics() -> None:
    """Read prediction, aggregate and rollup records."""


@metrics.command()
@click.option("--deployment", default=None, help="Deployment CRN.")
@click.option("--build", default=None, help="Build CRN.")
@click.option("--model", default=None, help="Model CRN.")
@click.option("--since", default="0", show_default=True, help=f"Window start: {_TIME_HELP}.")
@click.option("--until", default="now", show_default=True, help=f"Window end: {_TIME_HELP}.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def read(
    deployment: str | None,
    build: str | None,
    model: str | None,
    since: str,
    until: str,
    limit: int | None,
    fmt: str,
    as_json: bool,
) -> None:
    """Records of one model, build or deployment within a time window."""
    import modelyard

    if as_json:
        if fmt not in ("table", "json"):
            raise InvalidInput(f"--json and --format {fmt} disagree; give one of them")
        fmt = "json"
    if not (deployment or build or model):
        raise InvalidInput("give one of --deployment, --build or --model (a CRN)")
    start = parse_time_ms(since, "--since")
    end = parse_time_ms(until, "--until")
    if fmt == "json":
        page = modelyard.read_metrics(
            model_deployment_crn=deployment,
            start_timestamp_ms=start,
            end_timestamp_ms=end,
            model_crn=model,
            model_build_crn=build,
            limit=limit,
        )
        print_json(page["metrics"])
        return
    frame = modelyard.read_metrics_frame(
        model_deployment_crn=deployment,
        start_timestamp_ms=start,
        end_timestamp_ms=end,
        model_crn=model,
        model_build_crn=build,
    )
    if limit is not None:
        frame = frame.head(limit)
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
        return
    shown = frame.head(_TABLE_ROWS)
    title = f"{len(frame)} records" + (
        f" (first {_TABLE_ROWS}; use --format csv for all)" if len(frame) > _TABLE_ROWS else ""
    )
    print_rows(title, [str(c) for c in shown.columns], shown.astype(object).values.tolist())


@metrics.command()
@click.argument("key")
@click.option("--deployment", default=None, help="Deployment CRN.")
@click.option("--build", default=None, help="Build CRN.")
@click.option("--model", default=None, help="Model CRN.")
@click.option("--since", default="0", show_default=True, help=f"Window start: {_TIME_HELP}.")
@click.option("--until", default="now", show_default=True, help=f"Window end: {_TIME_HELP}.")
@click.option(
    "--quantile",
    "quantiles",
    type=click.FloatRange(0, 1),
    multiple=True,
    help="A rank to report, repeatable (default: 0.01 0.05 0.25 0.5 0.75 0.95 0.99).",
)
@click.option(
    "--bins",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="Histogram bins between the smallest and the largest value.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def distribution(
    key: str,
    deployment: str | None,
    build: str | None,
    model: str | None,
    since: str,
    until: str,
    quantiles: tuple[float, ...],
    bins: int,
    as_json: bool,
) -> None:
    """Quantiles and a histogram of metric KEY over a window (exact, or with its rank error)."""
    # Exact from raw records; where the window is rolled up, from merged sketches (rank_error).
    import modelyard
    from modelyard.tracking.distribution import DEFAULT_QUANTILES

    if not (deployment or build or model):
        raise InvalidInput("give one of --deployment, --build or --model (a CRN)")
    found = modelyard.read_distribution(
        key,
        model_deployment_crn=deployment,
        start_timestamp_ms=parse_time_ms(since, "--since"),
        end_timestamp_ms=parse_time_ms(until, "--until"),
        model_crn=model,
        model_build_crn=build,
        quantiles=quantiles or DEFAULT_QUANTILES,
        bins=bins,
    )
    if as_json:
        print_json(found)
        return
    summary = {name: found[name] for name in ("count", "exact", "rank_error", "min", "max", "mean")}
    for rank, value in found["quantiles"].items():
        summary[f"p{rank * 100:g}"] = value
    print_mapping(f"Distribution of {key}", summary)
    edges, counts = found["bin_edges"], found["bin_counts"]
    rows = [[f"{edges[i]:.6g}", f"{edges[i + 1]:.6g}", n] for i, n in enumerate(counts)]
    if rows:
        print_rows("Histogram", ["from", "to", "count"], rows)
