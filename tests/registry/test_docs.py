"""docs/registry.md: its Python snippet runs, and its figures match the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from modelyard.registry import DEFAULT_TTL_S, ModelSettings
from modelyard.registry._events import DEFAULT_KEPT

PAGE = Path(__file__).resolve().parents[2] / "docs" / "registry.md"


def test_the_snippet_runs_in_a_fresh_process(modelyard_home: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    done = subprocess.run(
        [sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0].startswith("mya_") and lines[-1] == "started"


def test_the_page_states_the_code_s_defaults() -> None:
    text = PAGE.read_text()
    assert DEFAULT_TTL_S == 2.0 and "**2 seconds**" in text
    assert DEFAULT_KEPT == 10_000 and "newest 10,000" in text
    for name in ModelSettings.__dataclass_fields__:
        assert f"| `{name}` |" in text, f"setting {name} is not documented"
