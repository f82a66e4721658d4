"""``modelyard store``: look at and maintain the metrics store."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli.output import print_json, print_mapping
from modelyard.settings import get, parse_duration_ms

if TYPE_CHECKING:
    from modelyard.store import RollupPolicy

__all__ = ["store"]

_database_option = click.option(
    "--database-url",
    default=None,
    help="Database URL (default: MODELYARD_DATABASE_URL, else SQLite in MODELYARD_HOME).",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")


@click.group()
def store() -> None:
    """Inspect and maintain the metrics store."""


@store.command()
@_database_option
@_json_option
def info(database_url: str | None, as_json: bool) -> None:
    """Record counts, size on disk, the rollup policy in force and schema version."""
    # The policy (raw horizon, each tier's width and horizon) is the one ``store rollup`` and the
    # server's scheduled rollup apply: MODELYARD_RAW_HORIZON and the built-in tiers.
    from modelyard.store import open_store

    with open_store(database_url) as opened:
        data = dataclasses.asdict(opened.info())
    data["rollup_policy"] = dataclasses.asdict(_policy())
    if as_json:
        print_json(data)
    else:
        print_mapping("Metrics store", _readable_info(data))


@store.command()
@click.option(
    "--horizon",
    default=None,
    help="Roll up raw records older than this, e.g. 30d (default: MODELYARD_RAW_HORIZON).",
)
@_database_option
@_json_option
def rollup(horizon: str | None, database_url: str | None, as_json: bool) -> None:
    """Fold old raw prediction records into rollup buckets and coarsen old buckets."""
    from modelyard.store import RollupPolicy, open_store

    horizon_ms = parse_duration_ms(horizon, "--horizon") if horizon else get("raw_horizon")
    with open_store(database_url) as opened:
        report = opened.rollup(RollupPolicy(raw_horizon_ms=horizon_ms))
    data = dataclasses.asdict(report)
    if as_json:
        print_json(data)
    else:
        print_mapping("Rollup", data)


def _policy() -> RollupPolicy:
    """The policy in force: what ``store rollup`` (without --horizon) and the server apply."""
    from modelyard.store import RollupPolicy

    return RollupPolicy(raw_horizon_ms=get("raw_horizon"))


def _readable_info(data: dict[str, Any]) -> dict[str, Any]:
    readable = dict(data)
    counts = {int(w): n for w, n in (readable.pop("rollup_buckets") or {}).items()}
    policy = readable.pop("rollup_policy")
    readable["raw horizon"] = f"{_width(policy['raw_horizon_ms'])} (MODELYARD_RAW_HORIZON)"
    tiers = policy["tiers"]
    for i, tier in enumerate(tiers):
        width = int(tier["width_ms"])
        horizon = tier["horizon_ms"]
        if horizon is None:
            kept = "kept forever"
        elif i + 1 < len(tiers):
            kept = (
                f"kept {_width(int(horizon))}, then merged into {_width(tiers[i + 1]['width_ms'])}"
            )
        else:
            kept = f"kept {_width(int(horizon))}"
        readable[f"buckets of {_width(width)}"] = f"{counts.pop(width, 0)} ({kept})"
    for width_ms, count in sorted(counts.items()):  # widths of an earlier policy, if any
        readable[f"buckets of {_width(width_ms)}"] = f"{count} (not a tier of this policy)"
    size = readable.get("size_bytes")
    if isinstance(size, int):
        readable["size_bytes"] = f"{size:,} ({size / 1024**2:.1f} MiB)"
    return readable


def _width(ms: int) -> str:
    for unit, span in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % span == 0:
            return f"{ms // span}{unit}"
    return f"{ms}ms"
