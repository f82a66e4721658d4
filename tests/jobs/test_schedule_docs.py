"""docs/jobs.md: its Python snippet runs and prints what it says, and its figures match the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from modelyard.specs.job import (
    JOB_RESERVED_ENV,
    MAX_RETRIES,
    MAX_TIMEOUT_MS,
    MIN_TIMEOUT_MS,
    NOTIFY_ON,
    JobSpec,
)
from modelyard.specs.schedule import CATCH_UP_LIMIT, DEFAULT_GRACE_MS, MAX_EVERY_MS, MIN_EVERY_MS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "jobs.md"


def test_the_snippet_runs_in_a_fresh_process(modelyard_home: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    done = subprocess.run(
        [sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["6", "1", "0"]
    assert "the cycle nightly-drift -> report -> nightly-drift" in lines[3]


def test_the_page_states_the_code_s_limits_and_defaults() -> None:
    text = PAGE.read_text()
    assert CATCH_UP_LIMIT == 100 and "at most the **100** most recent" in text
    assert DEFAULT_GRACE_MS == 60_000 and "at most 60 s old" in text
    assert (MIN_EVERY_MS, MAX_EVERY_MS) == (1_000, 366 * 86_400_000) and "1 s to 366 days" in text
    assert (MIN_TIMEOUT_MS, MAX_TIMEOUT_MS) == (1_000, 604_800_000)
    assert "1,000 (1 s) to 604,800,000 (7 days)" in text
    assert MAX_RETRIES == 10 and "| `retries` | 0 | 0 to 10 |" in text
    assert all(f"`{name}`" in text for name in JOB_RESERVED_ENV)
    assert all(f"`{event}`" in text for event in NOTIFY_ON)
    options = JobSpec.model_fields
    for name in options:
        if name not in ("name", "cron", "timezone", "every_ms", "after", "manual"):
            assert f"| `{name}` |" in text, f"option {name} is not in the limits table"
    assert options["timeout_ms"].default == 3_600_000 and "| `timeout_ms` | 3,600,000" in text
    assert options["overlap"].default == "skip" and "| `overlap` | `skip` |" in text
    assert options["catch_up"].default == "latest" and "| `catch_up` | `latest` |" in text
