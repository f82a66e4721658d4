"""The ``modelyard`` command: parsing arguments and printing, nothing more."""

from __future__ import annotations

import typer

import modelyard

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Modelyard command line.")


@app.command()
def version() -> None:
    """Print the installed Modelyard version."""
    typer.echo(modelyard.__version__)


def main() -> None:
    app()
