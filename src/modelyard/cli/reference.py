"""The CLI reference page, generated from the command tree so it cannot drift from ``--help``.

``python -m modelyard.cli.reference > docs/cli.md`` regenerates it; a test checks it is current.
"""

from __future__ import annotations

import inspect
from pathlib import PurePath

import click

__all__ = ["render"]


def render() -> str:
    from modelyard.cli import cli

    root: click.Command = cli
    lines = [
        "# CLI reference",
        "",
        "Generated from the command definitions by `python -m modelyard.cli.reference`;",
        "a test fails when this page and `modelyard --help` disagree.",
        "",
    ]
    if root.help:
        text = inspect.cleandoc(root.help)
        lines += [line for line in text.splitlines() if line.strip() != "\b"]
        lines.append("")
    _walk(root, ["modelyard"], lines)
    return "\n".join(lines).rstrip() + "\n"


def _walk(command: click.Command, path: list[str], lines: list[str]) -> None:
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            _walk(command.commands[name], [*path, name], lines)
        return
    lines.append(f"## `{' '.join(path)}`")
    lines.append("")
    if command.help:
        # cleandoc, as click does for --help: a docstring's later paragraphs are indented, which
        # Markdown would render as code blocks.
        lines += [line for line in inspect.cleandoc(command.help).splitlines() if line != "\b"]
        lines.append("")
    rows = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
    if rows:
        lines.append("| option | meaning | default |")
        lines.append("| --- | --- | --- |")
        for option in rows:
            names = ", ".join(f"`{o}`" for o in option.opts)
            shown = option.default
            # Flags and options without a default show nothing (click uses a sentinel for "unset").
            plain = isinstance(shown, str | int | float | PurePath) and not option.is_flag
            default = f"`{shown}`" if plain else ""
            help_text = (option.help or "").replace("|", "\\|")
            lines.append(f"| {names} | {help_text} | {default} |")
        lines.append("")


if __name__ == "__main__":
    print(render(), end="")
