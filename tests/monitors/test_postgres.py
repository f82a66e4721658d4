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


def test_open_windows_and_spec_keys_on_postgres(postgres_schema_url: str) -> None:
    """Issue 11 on PostgreSQL: a partial window is recomputed once closed (the state query's
    LIKE on the stored JSON), and a label never recorded but close to a recorded key is an
    error (the delayed-values lookup)."""
    from modelyard.errors import InvalidInput

    with PostgresStore(postgres_schema_url) as store:
        stream = write_stream(store, 4, unlabelled=frozenset(range(4)))
        dep = stream.ident.deployment_crn
        # One label, on a prediction older than the latest 1,000 records the keys come from.
        store.add_delayed(stream.uuids[0][0], {"churned": 1}, source="test")
        said: list[str] = []
        known = {"name": "k", "deployment": dep, "prediction": "probability", "label": "churned"}
        run_monitor(
            MonitorSpec.from_dict({**known, "window": "1h", "metrics": ["label_coverage"]}),
            now_ms=T0,
            store=store,
            warn=said.append,
        )
        assert said == []
        data = {
            "name": "open-pg",
            "deployment": dep,
            "prediction": "probability",
            "window": "1h",
            "metrics": ["estimated_performance"],
        }
        spec = MonitorSpec.from_dict(data)
        half = T0 + HOUR // 2
        (opened,) = run_monitor(spec, window=(T0, half), now_ms=half, store=store)
        assert opened.partial
        assert run_monitor(spec, now_ms=half + 60_000, store=store) == []
        (closed,) = run_monitor(spec, now_ms=T0 + HOUR, store=store)
        assert (closed.start_ms, closed.reason, closed.partial) == (T0, "new", False)
        with pytest.raises(InvalidInput) as caught:
            labelled = {**data, "label": "charge", "metrics": ["label_coverage"]}
            run_monitor(MonitorSpec.from_dict(labelled), now_ms=T0 + HOUR, store=store)
        assert "'charge'" in caught.value.message and "'charges'" in caught.value.message
