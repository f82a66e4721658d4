"""The monitor job's labelling step: only what Modelyard holds is labelled."""

from __future__ import annotations

import time
from pathlib import Path

import modelyard
from modelyard.demo.crm import Crm
from modelyard.demo.project.monitor_job import label_due


@modelyard.model_metrics
def _predict(args: dict[str, int]) -> dict[str, float]:
    modelyard.track_metrics({"support_calls": args["support_calls"]})
    return {"churn_probability": 0.5}


def test_only_predictions_modelyard_holds_are_labelled(tmp_path: Path) -> None:
    deployment = modelyard.current_identity().deployment_crn
    assert deployment is not None
    now = time.time_ns() // 1_000_000
    sent = [_predict({"support_calls": n})["uuid"] for n in range(3)]
    crm = Crm(tmp_path / "crm.db")
    try:
        rows = [(u, f"C{i}", now, 0.5, 1.0) for i, u in enumerate(sent)]
        # A prediction the CRM knows but Modelyard does not hold (not flushed yet, say).
        rows.append(("never-sent-uuid", "C9", now, 0.5, 1.0))
        crm.record_predictions(rows)
        crm.record_churn([("C0", now + 1)])
        slot_ms = now + 10
        assert label_due(crm, deployment, slot_ms, horizon_ms=0) == 3
        assert crm.counts()["labelled"] == 3
        # The one Modelyard lacks is still due: the next run tries it again.
        assert [u for u, _, _ in crm.outcomes_due(slot_ms)] == ["never-sent-uuid"]
    finally:
        crm.close()
    frame = modelyard.read_metrics_frame(deployment)
    labelled = frame[frame["churned"].notna()]  # delayed metrics are merged into their record
    assert sorted(labelled["predictionUuid"]) == sorted(sent)
    assert labelled.set_index("predictionUuid")["churned"][sent[0]] == 1
