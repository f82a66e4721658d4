"""Shared pieces of the benchmark scripts: repeated timing, a results table, JSON output.

Every figure is measured ``repeat`` times (three by default) and the median is reported, with the
individual runs and the process CPU time kept in the JSON so a noisy run on a shared machine can
be told apart from a slow one.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

__all__ = ["Figure", "Report", "Timer", "machine", "measure", "timer"]

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Timer:
    """Wall and process CPU seconds of one timed block."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def timer() -> Iterator[Timer]:
    """Time a block; CPU time is process-wide, so it includes a writer thread's work too."""
    out = Timer()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        out.wall = time.perf_counter() - wall
        out.cpu = time.process_time() - cpu


def measure(run: Callable[[], Timer], repeat: int) -> list[Timer]:
    """Call ``run`` (which times its own critical section) ``repeat`` times."""
    return [run() for _ in range(repeat)]


@dataclass
class Figure:
    """One reported number: the median over runs of ``per / seconds`` (a rate) or of a value."""

    name: str
    unit: str
    runs: list[float]
    cpu_s: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    baseline: str | None = None  # name of the Figure this one is compared with
    ratio: float | None = None  # this median / baseline median
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @classmethod
    def rate(cls, name: str, unit: str, count: int, timers: list[Timer], note: str = "") -> Figure:
        return cls(
            name,
            unit,
            [count / t.wall for t in timers],
            [t.cpu for t in timers],
            [t.wall for t in timers],
            note=note,
        )

    @classmethod
    def seconds(cls, name: str, timers: list[Timer], note: str = "") -> Figure:
        return cls(
            name,
            "s",
            [t.wall for t in timers],
            [t.cpu for t in timers],
            [t.wall for t in timers],
            note=note,
        )


@dataclass
class Report:
    """The figures of one benchmark run, printed as a table and written as JSON."""

    benchmark: str
    params: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    # Wide when writing to a file or pipe, so the table stays readable in a log.
    console: Console = field(
        default_factory=lambda: Console(width=None if sys.stdout.isatty() else 170)
    )

    def add(self, figure: Figure, baseline: Figure | None = None) -> Figure:
        if baseline is not None:
            figure.baseline = baseline.name
            figure.ratio = figure.median / baseline.median if baseline.median else None
        self.figures.append(figure)
        self.console.print(
            f"  {figure.name}: {_fmt(figure.median)} {figure.unit}"
            + (f" (x{figure.ratio:.2f} vs {figure.baseline})" if figure.ratio else ""),
            highlight=False,
        )
        return figure

    def skip(self, what: str, reason: str) -> None:
        self.skipped[what] = reason
        self.console.print(f"  [yellow]skipped[/] {what}: {reason}")

    def table(self) -> Table:
        table = Table(title=f"{self.benchmark} (median of runs)")
        columns = ("figure", "median", "unit", "runs", "cpu s", "vs baseline", "ratio", "note")
        for column in columns:
            table.add_column(
                column, justify="right" if column in ("median", "ratio", "cpu s") else "left"
            )
        for f in self.figures:
            table.add_row(
                f.name,
                _fmt(f.median),
                f.unit,
                " ".join(_fmt(r) for r in f.runs),
                _fmt(statistics.median(f.cpu_s)) if f.cpu_s else "",
                f.baseline or "",
                f"{f.ratio:.2f}" if f.ratio is not None else "",
                f.note,
            )
        for what, reason in self.skipped.items():
            table.add_row(what, "-", "", "", "", "", "", f"skipped: {reason}")
        return table

    def write(self, path: Path | None = None) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        target = path or RESULTS / f"{self.benchmark}-{stamp}.json"
        body = {
            "benchmark": self.benchmark,
            "created": stamp,
            "machine": machine(),
            "params": self.params,
            "figures": [{**asdict(f), "median": f.median} for f in self.figures],
            "skipped": self.skipped,
        }
        target.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
        return target


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def machine() -> dict[str, Any]:
    """What the numbers were measured on (the load of other processes is not controlled)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": load,
        "git_commit": commit,
    }
