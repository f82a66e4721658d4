"""The web app's CRM: uuids next to customer ids, churn events, and which outcomes are due."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.demo.crm import Crm
from modelyard.errors import InvalidInput


def test_outcomes_due_after_the_horizon(tmp_path: Path) -> None:
    app, job = Crm(tmp_path / "crm.db"), Crm(tmp_path / "crm.db")  # two connections, one file
    app.record_predictions(
        [
            ("u1", "C1", 1000, 0.9, 3.0),
            ("u2", "C2", 2000, 0.1, 3.0),
            ("u3", "C3", 5000, 0.5, 3.0),
        ]
    )
    app.record_churn([("C1", 1500), ("C3", 5200), ("C1", 1600)])  # a repeat is kept once
    # Before 3000 only u1 and u2 are past their horizon: u1 churned, u2 stayed.
    assert job.outcomes_due(3000) == [("u1", 1, 1000), ("u2", 0, 2000)]
    job.mark_labelled(["u1", "u2"], 3000)
    assert job.outcomes_due(3000) == []
    assert job.outcomes_due(6000) == [("u3", 1, 5000)]
    assert app.counts() == {"predictions": 3, "churn_events": 2, "labelled": 2}
    assert [t for t, _ in app.latencies()] == [1000, 2000, 5000]
    with pytest.raises(InvalidInput, match="before_ms='soon'"):
        job.outcomes_due("soon")  # type: ignore[arg-type]
    app.close()
    job.close()
