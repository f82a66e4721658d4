"""The same monitor on PostgreSQL: replacement, late labels and alerts on a real server."""

from __future__ import annotations

import pytest
from sklearn.metrics import roc_auc_score

from modelyard.monitors import MonitorSpec, list_alerts, run_monitor, upload_reference
from modelyard.monitors.references import load_reference
from modelyard.store.base import Query, RecordKind, RollupPolicy
from modelyard.store.postgres import PostgresStore

from .conftest import HOUR, T0, reference_frame, write_stream

pytestmark = pytest.mark.postgres


def test_monitor_on_postgres(postgres_schema_url: str) -> None:
    with PostgresStore(postgres_schema_url) as store:
        stream = write_stream(store, 4, drifted=frozenset({3}), unlabelled=frozenset({2}))
        dep = stream.ident.deployment_crn
        upload_reference(reference_frame(), dep, store=store)
        assert len(load_reference(dep, store=store)) == 4000
        spec = MonitorSpec.from_dict(
            {
                "name": "churn-pg",
                "deployment": dep,
                "reference": {"stored": "training"},
                "features": ["tenure", "charges", "plan"],
                "categorical": ["plan"],
                "prediction": "probability",
                "label": "churned",
                "window": "1h",
                "alerts": ["drift.flagged > 0"],
            }
        )
        first = run_monitor(spec, now_ms=T0 + 4 * HOUR, store=store, settle_ms=0)
        assert [r.reason for r in first] == ["new"] * 4
        rows = stream.windows[0]
        assert first[0].metrics["roc_auc"] == pytest.approx(
            roc_auc_score(rows["churned"], rows["probability"]), abs=1e-12
        )
        assert first[3].metrics["drift.flagged_features"] == ["tenure"]
        assert [a["state"] for a in list_alerts(store=store)] == ["firing"]

        for i in range(50):  # late labels for window 2
            store.add_delayed(stream.uuids[2][i], {"churned": 1}, source="test")
        second = run_monitor(spec, now_ms=T0 + 4 * HOUR, store=store, settle_ms=0)
        assert [(r.start_ms, r.reason) for r in second] == [(T0 + 2 * HOUR, "late_labels")]
        assert second[0].metrics["labelled"] == 50

        run_monitor(spec, window=(T0, T0 + 4 * HOUR), store=store, settle_ms=0)
        records, _ = store.read(
            Query(deployment_crn=dep, kinds=frozenset({RecordKind.AGGREGATE}), end_ms=T0 + 9 * HOUR)
        )
        assert [r.start_ms for r in records] == [T0 + w * HOUR for w in range(4)]

        # after rollup: the raw results stay, and a new monitor gets drift from the sketches
        store.rollup(RollupPolicy(raw_horizon_ms=1000), now_ms=T0 + 6 * HOUR)
        again = run_monitor(spec, window=(T0, T0 + 4 * HOUR), store=store, settle_ms=0)
        assert [r.written for r in again] == [False] * 4
        assert again[0].metrics["roc_auc"] == first[0].metrics["roc_auc"]
        late_spec = MonitorSpec.from_dict({**spec.to_dict(), "name": "late-pg", "alerts": []})
        late = run_monitor(late_spec, window=(T0, T0 + 4 * HOUR), store=store, settle_ms=0)
        assert [r.metrics["drift.source"] for r in late] == ["sketch"] * 4
        assert [r.metrics["drift.flagged_features"] for r in late] == [[], [], [], ["tenure"]]
        assert late[3].metrics["psi.plan"] == pytest.approx(first[3].metrics["psi.plan"])
