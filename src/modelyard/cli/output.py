"""Printing for the CLI: rich tables for people, JSON for programs, one error format."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

__all__ = ["console", "error", "print_json", "print_mapping", "print_rows"]

console = Console()
_err = Console(stderr=True)


def print_json(value: Any) -> None:
    sys.stdout.write(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"
    )


def print_mapping(title: str, mapping: Mapping[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in mapping.items():
        table.add_row(key, _cell(value))
    console.print(table)


def print_rows(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def error(message: str) -> None:
    _err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "" if value is None else str(value)
