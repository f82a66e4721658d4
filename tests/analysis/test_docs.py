"""The Python examples of docs/analysis.md run and their assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"


def test_python_blocks_of_the_analysis_page_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/analysis.md should keep at least one runnable example"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})
