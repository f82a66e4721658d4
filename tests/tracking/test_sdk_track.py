from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import modelyard
from modelyard.errors import InvalidInput
from modelyard.tracking import NotRecordedWarning


def test_outside_a_prediction_warns_once_that_nothing_was_recorded() -> None:
    with pytest.warns(NotRecordedWarning, match=r"\['accuracy'\] were not recorded"):
        modelyard.track_metric("accuracy", 0.9)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        modelyard.track_metric("accuracy", 0.91)  # second time: silent
        modelyard.track_metrics({"a": 1})


def test_bad_values_fail_outside_a_prediction_too() -> None:
    with pytest.raises(InvalidInput, match=r"'x\.y'"):
        modelyard.track_metrics({"x": {"y": float("inf")}})
    with pytest.raises(InvalidInput, match="non-empty string"):
        modelyard.track_metric("", 1)


def test_inside_a_job_run_metrics_are_recorded_as_run_metrics(
    monkeypatch: pytest.MonkeyPatch, modelyard_home: Path
) -> None:
    monkeypatch.setenv("MODELYARD_RUN_ID", "run-42")
    modelyard.track_metric("rows", 1000)
    modelyard.track_metrics({"auc": 0.81, "report": {"n": 3}})
    lines = (modelyard_home / "runs" / "run-42" / "metrics.jsonl").read_bytes().splitlines()
    entries = [orjson.loads(line) for line in lines]
    assert [e["metrics"] for e in entries] == [{"rows": 1000}, {"auc": 0.81, "report": {"n": 3}}]
    assert all(isinstance(e["trackedMs"], int) for e in entries)


def test_an_unsafe_run_id_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_RUN_ID", "../escape")
    with pytest.raises(InvalidInput, match=r"MODELYARD_RUN_ID='\.\./escape'"):
        modelyard.track_metric("rows", 1)
