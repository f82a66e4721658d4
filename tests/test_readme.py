"""The README starts with the two commands; its snippets run in tests/test_docs_snippets.py."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


def test_sdk_snippet_shows_the_aggregate_and_integer_labels_when_run_twice(
    tmp_path: Path,
) -> None:
    """ "Five minutes with the SDK", run twice in one home as a reader would: each run prints
    the aggregate record it just wrote (not a prediction), and ``churned`` stays integers with no
    row of NaN for the aggregates earlier runs wrote."""
    import os
    import subprocess
    import sys

    text = README.read_text()
    section = text[text.index("## Five minutes with the SDK") :]
    snippet = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert snippet is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(tmp_path / "home")
    for run in (1, 2):
        done = subprocess.run(
            [sys.executable, "-c", snippet.group(1)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.strip().splitlines()
        table, last = lines[1:-1], lines[-1]
        assert "'predictionUuid': None" in last and "'metrics': {'roc_auc': 0.81}" in last, last
        assert len(table) == 1 + run, table  # a header and one row per prediction so far
        assert not any("NaN" in row or "1.0" in row for row in table), table
        assert all(row.split()[-1] == "1" for row in table[1:]), table
