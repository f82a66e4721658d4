"""The command tree's shared conventions: every command that prints data takes ``--json``, and
``models deploy --help`` says that ``--cpus`` is not enforced."""

from __future__ import annotations

import subprocess
import sys

import click
import orjson
from click.testing import CliRunner

from modelyard.cli import cli
from modelyard.store import Identity, Prediction, open_store

# Commands that print no data of their own: a process's output or log text, or a version string.
NO_DATA = {"demo", "server", "version", "models logs"}


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found.update(_commands(command, path + " "))
        else:
            found[path] = command
    return found


def test_every_command_that_prints_data_takes_json() -> None:
    commands = _commands(cli)
    assert set(commands) >= NO_DATA  # the exemptions still exist, so this list stays honest
    missing = [
        path
        for path, command in sorted(commands.items())
        if path not in NO_DATA
        and "--json" not in {opt for p in command.params for opt in getattr(p, "opts", [])}
    ]
    assert missing == []


def test_deploy_help_says_how_cpus_are_enforced() -> None:
    result = CliRunner().invoke(cli, ["models", "deploy", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "cgroup v2 cpu.max, else CPU affinity" in text and "--gpus" in text


def test_metrics_read_json_is_format_json() -> None:
    who = Identity("crn:m/1", "crn:b/1", "crn:d/1")
    with open_store() as store:
        store.write_predictions([Prediction("u1", who, 5, 6, {"s": 1})])
    run = CliRunner().invoke
    plain = run(cli, ["metrics", "read", "--deployment", "crn:d/1", "--json"])
    assert plain.exit_code == 0, plain.output
    assert orjson.loads(plain.stdout)[0]["predictionUuid"] == "u1"
    clash = run(cli, ["metrics", "read", "--deployment", "crn:d/1", "--json", "--format", "csv"])
    assert clash.exit_code != 0 and "--format csv" in str(clash.exception)


def test_the_command_does_not_load_statistics_or_pydantic_to_start() -> None:
    """Every ``modelyard`` call imports the whole CLI: the specs' pydantic models and the
    statistics (scikit-learn, SciPy's stats) load only in the commands that use them. (They
    slipped in once through ``specs`` and made each call a second slower.)"""
    code = (
        "import sys, modelyard.cli; "
        "print(','.join(m for m in ('sklearn', 'scipy.stats', 'pydantic') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
