"""``modelyard metrics``: read tracked records from the terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from modelyard.cli.names import resolve, unknown_crn_note
from modelyard.cli.output import JSON_HELP, print_json, print_mapping, print_rows
from modelyard.errors import InvalidInput
from modelyard.timeparse import parse_time_ms

__all__ = ["metrics"]

_TABLE_ROWS = 20
_TIME_HELP = "epoch ms, ISO 8601, 'now', or a duration before now such as 2h"
_DEPLOYMENT_HELP = "Deployment CRN, or a model name (its active deployment)."
_BUILD_HELP = "Build CRN or uuid prefix, or a model name (its active deployment's build)."
_MODEL_HELP = "Model name or CRN."
_NEEDED = "give one of --deployment, --build or --model (a model name or a CRN)"


def _identifiers(
    deployment: str | None, build: str | None, model: str | None
) -> tuple[str | None, str | None, str | None]:
    """The CRNs the options name (names and prefixes resolved; see ``cli.names``)."""
    if not (deployment or build or model):
        raise InvalidInput(_NEEDED)
    return (
        None if deployment is None else resolve(deployment, "deployment", "--deployment"),
        None if build is None else resolve(build, "build", "--build"),
        None if model is None else resolve(model, "model", "--model"),
    )


@contextmanager
def _known_on_error(*crns: str | None) -> Iterator[None]:
    """A store that has never seen a CRN refuses it: add which models are registered."""
    try:
        yield
    except InvalidInput as exc:
        notes = [n for n in (unknown_crn_note(c) for c in crns if c is not None) if n]
        if not notes:
            raise
        raise InvalidInput(f"{exc.message}; {'; '.join(notes)}", **exc.details) from None


def _say_if_unknown(*crns: str | None) -> None:
    """Nothing was found: say so on stderr when a CRN given is not registered (a typo, or a
    CRN from another installation), with the models that are."""
    for crn in crns:
        note = None if crn is None else unknown_crn_note(crn)
        if note is not None:
            click.echo(f"warning: no records found; {note}", err=True)


@click.group()
def metrics() -> None:
    """Read prediction, aggregate and rollup records."""


@metrics.command()
@click.option("--deployment", default=None, help=_DEPLOYMENT_HELP)
@click.option("--build", default=None, help=_BUILD_HELP)
@click.option("--model", default=None, help=_MODEL_HELP)
@click.option("--since", default="0", show_default=True, help=f"Window start: {_TIME_HELP}.")
@click.option("--until", default="now", show_default=True, help=f"Window end: {_TIME_HELP}.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table: ISO local times, plain tab-separated rows when piped; json and csv: every "
    "record, times as epoch ms.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json (times as epoch ms).")
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

    if as_json:
        if fmt not in ("table", "json"):
            raise InvalidInput(f"--json and --format {fmt} disagree; give one of them")
        fmt = "json"
    start = parse_time_ms(since, "--since")
    end = parse_time_ms(until, "--until")
    deployment, build, model = _identifiers(deployment, build, model)
    with _known_on_error(deployment, build, model):
        _read(deployment, build, model, start, end, limit, fmt)


def _read(
    deployment: str | None,
    build: str | None,
    model: str | None,
    start: int,
    end: int,
    limit: int | None,
    fmt: str,
) -> None:
    from modelyard.tracking import read_metrics, read_metrics_frame

    if fmt == "json":
        page = read_metrics(
            model_deployment_crn=deployment,
            start_timestamp_ms=start,
            end_timestamp_ms=end,
            model_crn=model,
            model_build_crn=build,
            limit=limit,
        )
        print_json(page["metrics"])
        if not page["metrics"]:
            _say_if_unknown(deployment, build, model)
        return
    frame = read_metrics_frame(
        model_deployment_crn=deployment,
        start_timestamp_ms=start,
        end_timestamp_ms=end,
        model_crn=model,
        model_build_crn=build,
    )
    if limit is not None:
        frame = frame.head(limit)
    if frame.empty:
        _say_if_unknown(deployment, build, model)
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
@click.option("--deployment", default=None, help=_DEPLOYMENT_HELP)
@click.option("--build", default=None, help=_BUILD_HELP)
@click.option("--model", default=None, help=_MODEL_HELP)
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
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def distribution(  # noqa: PLR0913 - click passes one parameter per option
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
    from modelyard.tracking.distribution import DEFAULT_QUANTILES, read_distribution

    deployment, build, model = _identifiers(deployment, build, model)
    with _known_on_error(deployment, build, model):
        found = read_distribution(
            key,
            model_deployment_crn=deployment,
            start_timestamp_ms=parse_time_ms(since, "--since"),
            end_timestamp_ms=parse_time_ms(until, "--until"),
            model_crn=model,
            model_build_crn=build,
            quantiles=quantiles or DEFAULT_QUANTILES,
            bins=bins,
        )
    if not found["count"]:
        _say_if_unknown(deployment, build, model)
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
