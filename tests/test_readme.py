"""The README's Python snippets run, as a user would run them: a fresh process, a fresh home."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    # The serving tour's steps need a running server: tests/test_readme_serve.py runs them.
    text = re.sub(r"<!-- serve-tour.*?<!-- /serve-tour -->", "", README.read_text(), flags=re.S)
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_snippet_runs(index: int, modelyard_home: Path) -> None:
    code = _python_blocks()[index]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the snippet printed nothing"
