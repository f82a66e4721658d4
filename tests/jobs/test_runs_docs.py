"""docs/jobs.md's sections on runs, retries and notifications state what the code does."""

from __future__ import annotations

import inspect
from pathlib import Path

from modelyard.jobs import builtin, notify, runner, scheduler
from modelyard.jobs.notify import Notifier

PAGE = Path(__file__).resolve().parents[2] / "docs" / "jobs.md"


def test_the_page_states_the_runners_figures() -> None:
    text = PAGE.read_text()
    defaults = inspect.signature(Notifier).parameters
    assert defaults["attempts"].default == 4 and "up to 4 attempts" in text
    assert defaults["backoff_s"].default == 1.0 and "1 s, 2 s and 4 s apart" in text
    assert defaults["workers"].default == 4 and "on 4 background threads" in text
    assert notify.LOG_TAIL_LINES == 40 and "the last 40 lines" in text
    assert runner.KEY_MARGIN_MS == 5 * 60_000 and "timeout plus 5\n   minutes" in text
    assert runner.RETRY_CAP_MS == 6 * 3_600_000 and "(at most 6 hours)" in text
    assert scheduler.DEFAULT_LEASE_MS == 60_000 and "a lease of 60 s" in text
    assert builtin.ROLLUP in text and builtin.RUN_HISTORY in text
    for env in ("MODELYARD_URL", "MODELYARD_API_KEY", "MODELYARD_JOB", "MODELYARD_RUN_ID"):
        assert f"| `{env}` |" in text
    for key in ("job", "run", "state", "attempt", "exit_code", "duration_ms", "log_tail", "link"):
        assert f'"{key}":' in text
