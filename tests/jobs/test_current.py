"""``modelyard.current_run()`` outside and inside (by its environment) a run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import modelyard
from modelyard.errors import InvalidInput
from modelyard.jobs.current import CurrentRun, current_run, format_slot, parse_slot


def test_outside_a_run_it_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELYARD_JOB", raising=False)
    monkeypatch.delenv("MODELYARD_RUN_ID", raising=False)
    assert modelyard.current_run() is None
    monkeypatch.setenv("MODELYARD_RUN_ID", "abc")  # a run id without a job is not a job run
    assert current_run() is None


def test_it_reads_the_runners_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    slot_ms = 1_790_000_060_000
    monkeypatch.setenv("MODELYARD_JOB", "nightly")
    monkeypatch.setenv("MODELYARD_RUN_ID", "0b7e6c1a")
    monkeypatch.setenv("MODELYARD_SCHEDULED_AT", format_slot(slot_ms))
    monkeypatch.setenv("MODELYARD_URL", "http://127.0.0.1:8000")
    run = current_run()
    assert run == CurrentRun(
        "nightly", "0b7e6c1a", datetime.fromtimestamp(slot_ms / 1000, UTC), "http://127.0.0.1:8000"
    )
    assert run is not None and run.scheduled_ms == slot_ms
    assert format_slot(slot_ms).endswith("Z")


def test_a_bad_slot_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_JOB", "nightly")
    monkeypatch.setenv("MODELYARD_RUN_ID", "0b7e6c1a")
    monkeypatch.setenv("MODELYARD_SCHEDULED_AT", "yesterday")
    with pytest.raises(InvalidInput, match="MODELYARD_SCHEDULED_AT='yesterday'"):
        current_run()


def test_naive_and_offset_times_become_utc() -> None:
    assert parse_slot("2026-03-01T02:00:00") == datetime(2026, 3, 1, 2, tzinfo=UTC)
    assert parse_slot("2026-03-01T03:00:00+01:00") == datetime(2026, 3, 1, 2, tzinfo=UTC)
