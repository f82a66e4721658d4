"""A monitor with only MODELYARD_URL and a job run's key, against a real server process.

The monitor process gets no database: its MODELYARD_HOME is an empty folder. Everything it reads
and writes goes over HTTP with the run-role key (``GET /api/v1/metrics`` for the windows,
``/api/v1/monitors/*`` and ``/api/v1/references/data`` for the rest); the results are then
checked in the server's store and against scikit-learn.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
from sklearn.metrics import roc_auc_score

import modelyard
from modelyard.errors import InvalidInput
from modelyard.ids import new_crn
from modelyard.monitors import MonitorSpec, run_monitor, upload_reference
from modelyard.registry import Registry
from modelyard.specs.job import JobSpec
from modelyard.store.base import Identity, MetricsStore, Query, RecordKind
from modelyard.tracking import backends

from .conftest import HOUR, T0, Server, reference_frame, write_stream

SPEC = """\
name: churn
deployment: {dep}
reference: {{stored: training}}
features: [tenure, charges, plan]
categorical: [plan]
prediction: probability
label: churned
window: 1h
alerts: ['drift.flagged > 0']
"""


def _aggregates(store: MetricsStore, dep: str) -> dict[int, list[dict[str, object]]]:
    query = Query(deployment_crn=dep, kinds=frozenset({RecordKind.AGGREGATE}))
    out: dict[int, list[dict[str, object]]] = {}
    for record in store.read(query)[0]:
        out.setdefault(record.start_ms, []).append(record.metrics)
    return out


def test_a_monitor_runs_with_only_a_server_url_and_a_run_key(
    sdk_store: MetricsStore,
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The model in the registry (the default project), and a run of a job of that project: a
    # job run's key reaches the models of its job's project.
    registry = Registry(sdk_store)
    model, _ = registry.create_model("churn")
    ident = Identity(model.crn, new_crn("build"), new_crn("deployment"))
    stream = write_stream(
        sdk_store, 3, drifted=frozenset({2}), unlabelled=frozenset({1}), ident=ident
    )
    dep = stream.ident.deployment_crn
    upload_reference(reference_frame(), dep)
    job_spec = JobSpec.parse(
        {"name": "churn-monitor", "project": str(tmp_path), "monitor": "churn.yaml", "manual": True}
    )
    run = registry.create_run(registry.create_job(job_spec).id, 0, 1, "manual")
    _, run_key = registry.create_api_key("run of a monitor job", "run", scope=run.id)
    spec_file = tmp_path / "churn.yaml"
    spec_file.write_text(SPEC.format(dep=dep))
    empty_home = tmp_path / "no-database-here"
    empty_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(MODELYARD_URL=server.url, MODELYARD_API_KEY=run_key, MODELYARD_HOME=str(empty_home))
    done = subprocess.run(
        [sys.executable, "-m", "modelyard.monitors", "run", str(spec_file), "--window",
         f"{T0}..{T0 + 3 * HOUR}", "--json"],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + server.output
    assert list(empty_home.iterdir()) == []  # no store was opened on this side
    results = orjson.loads(done.stdout)
    assert [(r["start_ms"], r["written"]) for r in results] == [
        (T0 + w * HOUR, True) for w in range(3)
    ]
    first, unlabelled, drifted = (r["metrics"] for r in results)
    rows = stream.windows[0]
    assert first["n"] == 300 and first["label_coverage"] == 1.0
    assert first["roc_auc"] == pytest.approx(roc_auc_score(rows["churned"], rows["probability"]))
    assert first["drift.flagged_features"] == []
    assert unlabelled["label_coverage"] == 0.0 and "roc_auc" not in unlabelled
    assert drifted["drift.flagged_features"] == ["tenure"]
    # written into the server's store: one aggregate per window, and the alert it raised
    stored = _aggregates(sdk_store, dep)
    assert sorted(stored) == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert [len(v) for v in stored.values()] == [1, 1, 1]
    assert stored[T0][0]["roc_auc"] == first["roc_auc"]
    token = (Path(os.environ["MODELYARD_HOME"]) / "admin.key").read_text().strip()
    admin = {"Authorization": f"Bearer {token}"}
    alerts = httpx.get(server.url + "/api/v1/alerts", headers=admin, timeout=30).json()["alerts"]
    assert [(a["monitor"], a["first_window_start_ms"]) for a in alerts] == [
        ("churn", T0 + 2 * HOUR)
    ]

    # Late labels, over HTTP too: this process switches its SDK to the server with the run key,
    # tracks the labels of window 1, and the next run recomputes that window alone.
    monkeypatch.setenv("MODELYARD_URL", server.url)
    monkeypatch.setenv("MODELYARD_API_KEY", run_key)
    assert backends.select().name == "remote"
    spec = MonitorSpec.from_yaml(spec_file)
    assert run_monitor(spec, now_ms=T0 + 3 * HOUR, settle_ms=0) == []  # sets the labels mark
    for uuid, label in zip(stream.uuids[1], stream.windows[1]["churned"], strict=True):
        modelyard.track_delayed_metrics({"churned": int(label)}, uuid)
    again = run_monitor(spec, now_ms=T0 + 3 * HOUR, settle_ms=0)
    assert [(r.start_ms, r.reason) for r in again] == [(T0 + HOUR, "late_labels")]
    late = again[0].metrics
    rows = stream.windows[1]
    assert late["label_coverage"] == 1.0
    assert late["roc_auc"] == pytest.approx(roc_auc_score(rows["churned"], rows["probability"]))

    # the routes check keys: none is 401, a key limited to another model finds nothing (404)
    path = f"{server.url}/api/v1/monitors/resolve"
    assert httpx.get(path, params={"deployment": dep}, timeout=30).status_code == 401
    other_model, _ = registry.create_model("other-model")  # a scope names an existing model
    _, scoped = registry.create_api_key("other model", "user", scope=other_model.crn, user="admin")
    refused = httpx.get(
        path, params={"deployment": dep}, headers={"Authorization": f"Bearer {scoped}"}, timeout=30
    )
    assert refused.status_code == 404, refused.text
    keys = f"{server.url}/api/v1/monitors/keys"
    other = {"Authorization": f"Bearer {scoped}"}
    assert httpx.get(keys, params={"deployment": dep}, headers=other).status_code == 404

    # Over HTTP too, a key the deployment never recorded is an error naming the closest ones.
    typo = MonitorSpec.from_yaml(spec_file).to_dict() | {"prediction": "probabilty"}
    with pytest.raises(InvalidInput) as caught:
        run_monitor(MonitorSpec.from_dict(typo), now_ms=T0 + 3 * HOUR, settle_ms=0)
    assert "'probabilty'" in caught.value.message and "'probability'" in caught.value.message
