"""Printing for the CLI: tables for people, plain rows for pipes, JSON for programs, one error
format.

On a terminal, tables are drawn with rich: prose wraps at spaces, and an identifier is never cut
to ``...`` nor broken across lines, since it is what the next command needs. When stdout is not a
terminal (a pipe, a file, a test), the same data comes out as plain rows: a header line, then one
line per row, cells separated by a tab, nothing cut, no box drawing, the title on stderr so stdout
holds only data. ``--json`` prints the complete answer with times as epoch milliseconds.

Times are epoch milliseconds everywhere in Modelyard. In tables they print as ISO 8601 in the
user's local time zone (``TZ``): a cell is taken for a time when its column is named like one
(``created_ms``, ``scheduled_at``, ``startTimeStampMs``) and its value is an integer in the range
of epoch milliseconds (years 2001 to 5138), so durations in ms (``duration_ms``) stay numbers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.table import Table

__all__ = [
    "JSON_HELP",
    "console",
    "error",
    "format_time",
    "is_terminal",
    "json_option",
    "print_json",
    "print_mapping",
    "print_rows",
]

#: The ``--json`` help of every command that prints a table.
JSON_HELP = (
    "Print JSON (times as epoch ms) instead of a table; piped output is plain tab-separated rows."
)

console = Console()
_err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

# Epoch milliseconds from 2001-09-09 to 5138: no duration in ms a person would read is that long.
_EPOCH_MS = range(10**12, 10**14)
_TIME_SUFFIXES = ("_ms", "_at", "ms")
# Words (cells without spaces) up to this long are never broken in a drawn table; longer ones
# (a JSON value) fold at the column's edge.
_WHOLE = 80
_NOT_TIMES = ("duration", "every", "timeout", "backoff", "latency", "interval", "window", "age")


def json_option(help: str = JSON_HELP) -> Callable[[F], F]:
    """The ``--json`` flag (parameter ``as_json``) with the help that says what the default is."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def is_terminal() -> bool:
    """Whether stdout is a terminal (looked up at each call: tests and pipes replace it)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def format_time(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in the local time zone: ``2026-12-05T07:10:00.123+01:00``."""
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="milliseconds")


def print_json(value: Any) -> None:
    sys.stdout.write(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"
    )


def print_mapping(title: str, mapping: Mapping[str, Any]) -> None:
    """``field value`` pairs: a two-column table, or ``field<TAB>value`` lines when piped.

    A nested object is spread one level (``last_run.state``), so its times read as times too;
    deeper values and lists print as JSON.
    """
    pairs = [(_header(key, [value]), _cell(value, key)) for key, value in _spread(mapping)]
    if not is_terminal():
        _title(title)
        for key, value in pairs:
            sys.stdout.write(f"{_plain(key)}\t{_plain(value)}\n")
        return
    _draw(title, ["field", "value"], [list(pair) for pair in pairs], show_header=False)


def print_rows(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table with a header; when piped, a tab-separated header line and one line per row."""
    cells = [[_cell(v, column) for v, column in zip(row, columns, strict=False)] for row in rows]
    columns = [_header(c, [row[i] for row in rows if i < len(row)]) for i, c in enumerate(columns)]
    if not is_terminal():
        _title(title)
        sys.stdout.write("\t".join(_plain(c) for c in columns) + "\n")
        for row in cells:
            sys.stdout.write("\t".join(_plain(c) for c in row) + "\n")
        return
    _draw(title, columns, cells, show_header=True)


def _draw(title: str, columns: Sequence[str], cells: list[list[str]], show_header: bool) -> None:
    """A rich table where no word (a CRN, a uuid, a key) is broken: each column is at least as
    wide as its longest word (up to ``_WHOLE``), prose wraps at spaces, and a table wider than
    the terminal is printed wider, its lines left for the terminal to wrap or scroll."""
    floors = [
        max([_longest_word(c) if show_header else 1] + [_longest_word(row[i]) for row in cells])
        for i, c in enumerate(columns)
    ]
    table = Table(title=title, show_header=show_header)
    for i, (column, floor) in enumerate(zip(columns, floors, strict=True)):
        bold = "bold" if not show_header and i == 0 else None
        table.add_column(column, style=bold, overflow="fold", min_width=floor)
    for row in cells:
        table.add_row(*row)
    needed = sum(floor + 3 for floor in floors) + 1  # padding and a border per column
    width = max(console.width, needed)
    console.print(table, highlight=False, width=width, crop=False)


def _longest_word(text: str) -> int:
    return min(max((len(word) for word in text.split()), default=0), _WHOLE)


def error(message: str) -> None:
    """``error: message`` on stderr: one unwrapped line when stderr is not a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    if not (isatty and isatty()):
        sys.stderr.write(f"error: {message}\n")
        return
    _err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)


def _spread(mapping: Mapping[str, Any]) -> list[tuple[str, Any]]:
    spread: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            spread += [(f"{key}.{inner}", nested) for inner, nested in value.items()]
        else:
            spread.append((str(key), value))
    return spread


def _title(title: str) -> None:
    if title:
        sys.stderr.write(title + "\n")


def _plain(text: str) -> str:
    """One cell on one line: tabs and newlines inside it would split the row."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


def is_time(name: str, value: Any) -> bool:
    """Whether the cell ``value`` of column ``name`` is a point in time (module docstring)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in _EPOCH_MS:
        return False
    lowered = name.lower().replace(" ", "_")
    if any(word in lowered for word in _NOT_TIMES):
        return False
    return lowered.endswith(_TIME_SUFFIXES) or "time" in lowered


def _header(name: str, values: Sequence[Any]) -> str:
    """``created_ms`` becomes ``created`` when its cells print as times (no longer in ms)."""
    if name.endswith("_ms") and any(is_time(name, _scalar(v)) for v in values):
        return name.removesuffix("_ms")
    return name


def _scalar(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str | bytes | dict | list):
        return value.item()  # numpy scalars from a DataFrame
    return value


def _cell(value: Any, column: str = "") -> str:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if value is None:
        return ""
    value = _scalar(value)
    if is_time(column, value):
        return format_time(int(value))
    return str(value)
