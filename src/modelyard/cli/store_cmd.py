"""``modelyard store``: look at and maintain the metrics store."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli.output import error, json_option, print_json, print_mapping, print_rows
from modelyard.settings import get, parse_duration_ms

if TYPE_CHECKING:
    from modelyard.store import RollupPolicy
    from modelyard.store.copy import CopyReport

__all__ = ["store"]

_database_option = click.option(
    "--database-url",
    default=None,
    help="Database URL (default: MODELYARD_DATABASE_URL, else SQLite in MODELYARD_HOME).",
)
_json_option = json_option()


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


@store.command("copy")
@click.option(
    "--from",
    "source",
    default=None,
    metavar="URL|HOME",
    help="The store to copy: a URL (sqlite:////path/modelyard.db, postgresql://...) or a home "
    "folder (its modelyard.db). Default: the store this shell uses (MODELYARD_DATABASE_URL, else "
    "the SQLite in MODELYARD_HOME).",
)
@click.option(
    "--to",
    "target",
    required=True,
    metavar="URL|HOME",
    help="Where to copy it: an empty database (postgresql://..., sqlite:////path/new.db) or a "
    "new home folder; or the target of an interrupted copy of the same store, to continue it.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1_000_000),
    default=10_000,
    show_default=True,
    help="Rows per transaction (each commits with the progress marker).",
)
@_json_option
def copy_cmd(source: str | None, target: str, batch_size: int, as_json: bool) -> None:
    """Copy a whole store (records, rollups, registry) into another database, e.g. SQLite into
    PostgreSQL.

    Every table is copied in key order, in batches committed with a progress marker, so an
    interrupted copy run again continues where it stopped, without duplicates. The target is
    migrated to the source's schema version, must be empty (or that interrupted copy), and each
    table is counted on both sides at the end. Stop the server using the source first (a live
    server in its home is refused). Key hashes are copied as they are: keys keep working.

    Prints a table of source and target counts per table; --json prints them as JSON (for
    scripts). Exit status 2 if a count differs or the copy cannot start.
    """
    from modelyard.store.copy import CountMismatch, copy_store

    try:
        report = copy_store(source, target, batch_size=batch_size, progress=_progress(as_json))
    except CountMismatch as exc:
        _print_copy(exc.report, as_json)
        raise
    except KeyboardInterrupt:
        error("interrupted; what was committed stays: run the same command again to continue")
        raise SystemExit(130) from None
    _print_copy(report, as_json)


def _progress(as_json: bool) -> Callable[[str, int, int], None] | None:
    """One line on stderr per table and every few seconds, for people (not with --json)."""
    if as_json:
        return None
    shown: dict[str, tuple[int, float]] = {}  # table -> (rows, when) last printed

    def show(table: str, copied: int, total: int) -> None:
        now = time.monotonic()
        rows, when = shown.get(table, (-1, 0.0))
        if total and copied != rows and (copied >= total or rows < 0 or now - when >= 5):
            shown[table] = (copied, now)
            click.echo(f"{table}: {copied:,} of {total:,} rows", err=True)

    return show


def _print_copy(report: CopyReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_dict())
        return
    print_rows(
        f"{report.source} -> {report.target}",
        ["table", "source rows", "target rows", "copied now", "check"],
        [
            [t.table, t.source, t.target, t.copied, "ok" if t.ok else "DIFFERS"]
            for t in report.tables
        ],
    )
    rate = report.rows_copied / report.seconds if report.seconds > 0 else 0.0
    resumed = " (continued an interrupted copy)" if report.resumed else ""
    # On stderr, so piped stdout is the table's rows and nothing else.
    click.echo(
        f"{report.rows_copied:,} rows copied in {report.seconds:.1f} s ({rate:,.0f} rows/s)"
        f"{resumed}; schema version {report.schema_version}; "
        + ("every count matches" if report.ok else "COUNTS DIFFER"),
        err=True,
    )


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
