"""The Python example of docs/monitors.md runs in a fresh home and its assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "monitors.md"


def test_python_example_of_the_monitors_page_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/monitors.md should keep a runnable example"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})
