"""Driving the ``modelyard`` command in-process: through click's runner, or through ``main`` so
its ModelyardError handling (one line on stderr, exit 2) is covered too."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from modelyard.cli import cli, main


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``modelyard ARGS`` through ``main``."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err
