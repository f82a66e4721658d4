"""Issue 11, "silently wrong or silently useless": an open window is never stored as final, late
labels are found whichever path computed a window, empty windows are no results, and a spec
naming keys the deployment never recorded is an error naming the closest recorded keys."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

import modelyard
from _async import run
from modelyard.cli import cli
from modelyard.errors import InvalidInput, ModelyardError
from modelyard.ids import new_prediction_uuid
from modelyard.monitors import MonitorSpec, run_monitor
from modelyard.monitors.__main__ import main as job_main
from modelyard.store.base import Identity, MetricsStore, Prediction

from .conftest import HOUR, T0, Server, identity, write_stream

MINUTE = 60_000


def _predict(store: MetricsStore, ident: Identity, times: list[int]) -> list[str]:
    """Predictions at ``times`` (ms), scored p = 0.1 + 0.1 i, labelled ``churned`` inline."""
    uuids = [new_prediction_uuid() for _ in times]
    store.write_predictions(
        [
            Prediction(u, ident, t, t + 1, {"p": 0.1 + 0.1 * (i % 8), "churned": i % 2})
            for i, (u, t) in enumerate(zip(uuids, times, strict=True))
        ]
    )
    return uuids


def _spec(deployment: str, window: str = "1m", **extra: Any) -> MonitorSpec:
    data = {
        "name": "churn",
        "deployment": deployment,
        "prediction": "p",
        "label": "churned",
        "window": window,
        "metrics": ["classification", "label_coverage"],
        **extra,
    }
    return MonitorSpec.from_dict(data)


def _aggregates(deployment: str) -> dict[int, dict[str, Any]]:
    records = modelyard.read_metrics(deployment, 0, int(time.time() * 1000) + HOUR)["metrics"]
    return {r["startTimeStampMs"]: r["metrics"] for r in records if r["predictionUuid"] is None}


def test_an_open_window_is_stored_partial_and_recomputed_once_closed(
    sdk_store: MetricsStore,
) -> None:
    """`--window 1h..now` at 30 s into a minute, then 4 more predictions in that minute: the run
    after the minute ends computes it again with n=7 (it kept n=3 and was never recomputed)."""
    ident = identity()
    dep = ident.deployment_crn
    minute = T0 + 90 * MINUTE
    _predict(sdk_store, ident, [minute + 1000, minute + 2000, minute + 3000])
    spec = _spec(dep)
    now = minute + 30_000
    first = run_monitor(spec, window=(now - HOUR, now), now_ms=now, settle_ms=0)
    assert len(first) == 61
    assert [r.start_ms for r in first if not r.empty] == [minute]
    (opened,) = [r for r in first if not r.empty]
    assert opened.partial and opened.metrics["n"] == 3
    # 60 empty windows: looked at, but no aggregate record of n=0 each.
    assert sorted(_aggregates(dep)) == [minute]
    assert _aggregates(dep)[minute]["window.partial"] is True

    _predict(sdk_store, ident, [minute + 40_000 + i for i in range(4)])
    still_open = run_monitor(spec, now_ms=minute + 50_000, settle_ms=0)
    assert still_open == []  # not closed yet: nothing is final

    closed = run_monitor(spec, now_ms=minute + MINUTE + 5_000, settle_ms=0)
    assert [(r.start_ms, r.reason, r.metrics["n"], r.partial) for r in closed] == [
        (minute, "new", 7, False)
    ]
    stored = _aggregates(dep)[minute]
    assert stored["n"] == 7 and "window.partial" not in stored
    assert run_monitor(spec, now_ms=minute + 2 * MINUTE + 5_000, settle_ms=0)[0].reason == "new"


def test_partial_windows_fire_no_alert(sdk_store: MetricsStore) -> None:
    from modelyard.monitors.alerts import list_alerts

    ident = identity()
    minute = T0 + 10 * MINUTE
    _predict(sdk_store, ident, [minute + 1000 + i for i in range(4)])
    spec = _spec(ident.deployment_crn, alerts=["n < 100"])
    run_monitor(spec, window=(minute, minute + 20_000), now_ms=minute + 20_000, settle_ms=0)
    assert list_alerts(all_states=True) == []
    run_monitor(spec, now_ms=minute + MINUTE, settle_ms=0)
    assert [a["rule"] for a in list_alerts()] == ["n < 100"]


def test_late_labels_of_a_requested_window_are_found_by_the_next_run(
    sdk_store: MetricsStore,
) -> None:
    """A window computed only by `monitors run --window` (no scheduled run before it) whose
    labels arrive afterwards is recomputed by the next run, as a scheduled window would be."""
    stream = write_stream(sdk_store, 2, unlabelled=frozenset({0, 1}))
    dep = stream.ident.deployment_crn
    spec = _spec(dep, window="1h", prediction="probability")
    first = run_monitor(spec, window=(T0, T0 + 2 * HOUR), now_ms=T0 + 2 * HOUR, settle_ms=0)
    assert [r.metrics.get("labelled") for r in first] == [0, 0]
    time.sleep(0.01)  # the labels' arrival time is after the mark the first run kept
    rows = stream.windows[1]
    for uuid, label in zip(stream.uuids[1], rows["churned"], strict=True):
        modelyard.track_delayed_metrics({"churned": int(label)}, uuid)
    again = run_monitor(spec, now_ms=T0 + 2 * HOUR, settle_ms=0)
    assert [(r.start_ms, r.reason) for r in again] == [(T0 + HOUR, "late_labels")]
    assert again[0].metrics["labelled"] == len(rows) and again[0].metrics["roc_auc"] > 0.5


def test_keys_the_deployment_never_recorded_are_errors_naming_the_closest(
    sdk_store: MetricsStore,
) -> None:
    stream = write_stream(sdk_store, 1)
    dep = stream.ident.deployment_crn
    now = T0 + 2 * HOUR
    with pytest.raises(InvalidInput) as caught:
        run_monitor(_spec(dep, prediction="probabilty"), now_ms=now)
    message = caught.value.message
    assert "'prediction'" in message and "'probabilty'" in message and "'probability'" in message
    with pytest.raises(InvalidInput) as caught:
        run_monitor(_spec(dep, prediction="probability", label="churn"), now_ms=now)
    assert "'label'" in caught.value.message and "'churned'" in caught.value.message
    with pytest.raises(InvalidInput) as caught:
        run_monitor(
            _spec(dep, prediction="probability", features=["tenur"], metrics=["classification"]),
            now_ms=now,
        )
    assert "'features'" in caught.value.message and "'tenure'" in caught.value.message
    fine = _spec(dep, prediction="probability", window="1h")
    assert run_monitor(fine, now_ms=now)[0].metrics["n"] == 300


def test_a_label_not_arrived_yet_and_a_deployment_without_records_are_warnings(
    sdk_store: MetricsStore,
) -> None:
    stream = write_stream(sdk_store, 1, unlabelled=frozenset({0}))
    said: list[str] = []
    spec = _spec(stream.ident.deployment_crn, prediction="probability", label="outcome")
    run_monitor(spec, now_ms=T0 + 2 * HOUR, warn=said.append)
    assert len(said) == 1 and "label 'outcome'" in said[0] and "yet" in said[0]

    empty = identity()
    sdk_store.register_identity(empty)
    said.clear()
    assert run_monitor(_spec(empty.deployment_crn), now_ms=T0, warn=said.append) == []
    assert len(said) == 1 and "no prediction yet" in said[0]


def test_the_readme_tour_window_then_the_job_recomputes_the_open_window(
    sdk_store: MetricsStore, tmp_path: Path
) -> None:
    """What the README's monitor tour does, on the clock: `modelyard monitors run SPEC --window
    1h..now` while the current window is open, more predictions in it, then what the scheduled
    job runs (`python -m modelyard.monitors run SPEC`) once it has closed: the right n."""
    ident = identity()
    dep = ident.deployment_crn
    width = 10_000
    now = int(time.time() * 1000)
    if now % width > width - 6000:  # too close to the window's end for three steps in it
        time.sleep((width - now % width) / 1000 + 0.05)
        now = int(time.time() * 1000)
    start = now // width * width
    _predict(sdk_store, ident, [start + 1, start + 2, start + 3])
    spec = tmp_path / "monitor.yaml"
    spec.write_text(
        f"deployment: {dep}\nprediction: p\nlabel: churned\nwindow: 10s\n"
        "metrics: [classification, label_coverage]\n"
    )
    shown = CliRunner().invoke(cli, ["monitors", "run", str(spec), "--window", "1h..now"])
    assert shown.exit_code == 0, shown.output
    assert "1 partial" in shown.output and "360 empty" in shown.output, shown.output
    assert "showing the last 1 with predictions" in shown.output, shown.output
    _predict(sdk_store, ident, [start + 10 + i for i in range(4)])
    time.sleep(max(0.0, (start + width + 50 - time.time() * 1000) / 1000))
    assert job_main(["run", str(spec), "--json"]) == 0
    stored = _aggregates(dep)
    assert stored[start]["n"] == 7 and "window.partial" not in stored[start], stored


def test_the_job_prints_a_summary_not_a_line_per_empty_window(
    sdk_store: MetricsStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ident = identity()
    minute = T0 + 30 * MINUTE
    _predict(sdk_store, ident, [minute + 5])
    spec = tmp_path / "monitor.yaml"
    spec.write_text(
        f"deployment: {ident.deployment_crn}\nprediction: p\nlabel: churned\nwindow: 1m\n"
        "metrics: [classification, label_coverage]\n"
    )
    window = f"{minute - HOUR}..{minute + MINUTE}"
    assert job_main(["run", str(spec), "--window", window]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{minute}..{minute + MINUTE} requested n=1",
        "  classification not computed: 1 labelled prediction < min_labels 30",
        "61 window(s) computed for monitor monitor: 1 complete, 0 partial, 60 empty (no "
        "predictions, no aggregate record)",
    ]
    assert job_main(["run", str(spec), "--window", window, "--json"]) == 0
    assert len(orjson.loads(capsys.readouterr().out)) == 61


@pytest.mark.slow
def test_jobs_create_checks_the_monitor_spec_as_a_run_would(
    sdk_store: MetricsStore, server: Server, tmp_path: Path
) -> None:
    """`jobs create --monitor SPEC` (CLI, and the REST route under it) refuses what every run
    would then fail on, with the run's own message; a valid spec is created."""
    stream = write_stream(sdk_store, 1)
    dep = stream.ident.deployment_crn
    project = tmp_path / "project"
    project.mkdir()
    base = f"deployment: {dep}\nprediction: probability\nlabel: churned\nwindow: 1h\n"
    specs = {
        "group.yaml": (base + "metrics: [classification, label_covrage]\n", "'label_coverage'"),
        "model.yaml": (
            "model: nosuch\nprediction: probability\nwindow: 1h\n"
            "metrics: [estimated_performance]\n",
            "'nosuch'",
        ),
        "key.yaml": (base.replace("probability", "probabilty"), "'probability'"),
        "rule.yaml": (base + "alerts: ['rocauc < 0.7']\n", "'roc_auc'"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = os.environ["MODELYARD_HOME"]
    exe = str(Path(sys.executable).parent / "modelyard")
    for name, (text, nearest) in specs.items():
        (project / name).write_text(text)
        with pytest.raises(ModelyardError) as caught:  # what every run of the job would say
            run_monitor(MonitorSpec.from_yaml(project / name), settle_ms=0)
        expected = caught.value.message
        assert nearest in expected, expected
        job = ["jobs", "create", name.split(".")[0], "--project-dir", str(project), "--manual"]
        done = subprocess.run(
            [exe, *job, "--monitor", name], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0, done.stdout
        assert expected in " ".join(done.stderr.split()), (expected, done.stderr)
    (project / "good.yaml").write_text(base + "alerts: ['roc_auc < 0.7']\n")
    job = ["jobs", "create", "good", "--project-dir", str(project), "--manual", "--json"]
    done = subprocess.run(
        [exe, *job, "--monitor", "good.yaml"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["job"]["monitor"] == "good.yaml"
    listed = httpx.get(
        f"{server.url}/api/v1/jobs",
        headers={"Authorization": f"Bearer {_admin_key()}"},
    ).json()["jobs"]
    assert sorted(j["name"] for j in listed if not j["builtin"]) == ["good"]


def _admin_key() -> str:
    return (Path(os.environ["MODELYARD_HOME"]) / "admin.key").read_text().strip()


def test_prediction_drift_without_the_scores_in_the_reference(sdk_store: MetricsStore) -> None:
    """Asked for, it is an error naming the column; only defaulted, a warning (not silence)."""
    from modelyard.monitors import upload_reference

    from .conftest import reference_frame

    stream = write_stream(sdk_store, 1)
    dep = stream.ident.deployment_crn
    upload_reference(reference_frame(n=500)[["tenure", "charges", "plan"]], dep)
    fields = {"reference": {"stored": "training"}, "features": ["tenure"], "window": "1h"}
    asked = _spec(dep, prediction="probability", **fields)
    asked = MonitorSpec.from_dict({**asked.to_dict(), "metrics": ["drift", "prediction_drift"]})
    with pytest.raises(InvalidInput) as caught:
        run_monitor(asked, now_ms=T0 + HOUR, settle_ms=0)
    assert "'probability'" in caught.value.message and "prediction_drift" in caught.value.message
    data = {k: v for k, v in asked.to_dict().items() if k != "metrics"}
    said: list[str] = []
    results = run_monitor(
        MonitorSpec.from_dict(data), now_ms=T0 + HOUR, settle_ms=0, warn=said.append
    )
    assert "psi.tenure" in results[0].metrics
    assert any("'prediction_drift'" in s and "default" in s for s in said), said


def test_the_server_stores_a_window_not_over_by_its_clock_as_partial(tmp_path: Path) -> None:
    """`PUT /api/v1/monitors/{name}/results` (what a job's monitor writes through): a window
    that has not ended by the server's clock is partial whatever the client said, and is not
    among the windows `GET .../state` reports computed."""
    import asyncio

    from modelyard.runtime import free_port
    from modelyard.server import ServerConfig, Services, create_app

    async def scenario() -> None:
        home = tmp_path / "home"
        app = create_app(ServerConfig(home=home, port=free_port()))
        async with app.router.lifespan_context(app):
            services: Services = app.state.services
            auth = {"Authorization": f"Bearer {(home / 'admin.key').read_text().strip()}"}
            ident = identity()
            services.store.register_identity(ident)
            dep = ident.deployment_crn
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                if time.time() * 1000 % MINUTE > MINUTE - 3000:  # the minute is about to end
                    await asyncio.sleep(3.5)
                now = int(time.time() * 1000)
                for start in (now // MINUTE * MINUTE - MINUTE, now // MINUTE * MINUTE):
                    body = {
                        "deployment": dep,
                        "source": "monitor:churn",
                        "start_ms": start,
                        "end_ms": start + MINUTE,
                        "n": 3,
                        "metrics": {"n": 3},
                    }
                    answer = await client.put(
                        "/api/v1/monitors/churn/results", json=body, headers=auth
                    )
                    assert answer.status_code == 204, answer.text
                state = await client.get(
                    "/api/v1/monitors/churn/state", params={"deployment": dep}, headers=auth
                )
                assert state.json()["starts"] == [now // MINUTE * MINUTE - MINUTE]
                stored = await client.get(
                    "/api/v1/monitors/churn/results",
                    params={"deployment": dep, "start_ms": now // MINUTE * MINUTE},
                    headers=auth,
                )
                assert stored.json()["results"][0]["metrics"]["window.partial"] is True

    run(scenario)


def test_nested_keys_are_checked_by_their_dotted_names(sdk_store: MetricsStore) -> None:
    """A feature tracked inside a dict (``track_metric("input", args)``) is named as
    ``read_metrics_frame`` names its column: ``input.tenure``."""
    ident = identity()
    sdk_store.write_predictions(
        [
            Prediction(
                new_prediction_uuid(), ident, T0 + i, T0 + i + 1, {"input": {"tenure": i}, "p": 0.5}
            )
            for i in range(5)
        ]
    )
    fields = {"window": "1h", "metrics": ["estimated_performance"], "label": None}
    fine = _spec(ident.deployment_crn, features=["input.tenure"], **fields)
    assert run_monitor(fine, now_ms=T0 + HOUR)[0].metrics["n"] == 5
    with pytest.raises(InvalidInput) as caught:
        run_monitor(_spec(ident.deployment_crn, features=["input.tenur"], **fields), now_ms=T0)
    assert "'input.tenure'" in caught.value.message
