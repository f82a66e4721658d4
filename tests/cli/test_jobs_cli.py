"""``modelyard jobs`` against a real ``modelyard server`` process: a job every second records
runs, logs, run-now, cancel (with a follower that ends with the run), a pipeline through
``--after``, a run that reads and writes metrics through the SDK with no key in its code (the
run's own ``MODELYARD_URL`` and scoped key), and bad input that changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from _wait import wait_until
from modelyard.cli import main
from server.conftest import ServerProcess, server_process  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

DEPLOYMENT = "crn:modelyard:deployment/33333333-3333-4333-8333-333333333333"
BUILD = "crn:modelyard:build/33333333-3333-4333-8333-333333333334"
WATCHED = "crn:modelyard:deployment/33333333-3333-4333-8333-333333333336"
T0 = 1_764_925_200_000  # 2025-12-05T09:00:00Z (the API takes times from 2000 on)

TICK = """
import modelyard
run = modelyard.current_run()
print("tick", run.job, run.scheduled_at.isoformat(), flush=True)
"""

MONITOR = """
import os

import httpx

import modelyard

run = modelyard.current_run()
deployment = os.environ["WATCHED"]
records = modelyard.read_metrics(model_deployment_crn=deployment)["metrics"]
n = sum(1 for r in records if r.get("kind", "prediction") == "prediction")
positives = sum(1 for r in records if r["metrics"].get("label") == 1)
modelyard.track_aggregate_metrics(
    {"count": n, "positives": positives}, run.scheduled_ms - 86_400_000, run.scheduled_ms,
    model_deployment_crn=deployment,
)
modelyard.track_metric("rows", n)
print("read", n, "records for", run.job, "run", run.run_id, flush=True)
# The key is the run's own (given by the runner, not written here): only it may read this run.
me = httpx.get(
    f"{run.url}/api/v1/runs/{run.run_id}",
    headers={"Authorization": "Bearer " + os.environ["MODELYARD_API_KEY"]},
)
print("own run:", me.status_code, me.json()["state"], flush=True)
"""

SLEEPER = """
import time
print("going to sleep", flush=True)
time.sleep(120)
"""

STEP = """
import sys
print("step", sys.argv[1], flush=True)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "jobs-project"
    root.mkdir()
    for name, text in (
        ("tick.py", TICK),
        ("monitor.py", MONITOR),
        ("sleeper.py", SLEEPER),
        ("step.py", STEP),
    ):
        (root / name).write_text(textwrap.dedent(text))
    return root


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``modelyard ARGS`` through ``main`` (errors: one line on stderr, exit 2); stderr comes
    back with its whitespace (rich wraps long lines) made single spaces."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, " ".join(captured.err.split())


def ok_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, (args, out, err)
    return orjson.loads(out)


def wait_for(predicate: Callable[[], Any]) -> Any:
    """A CLI call per poll against a real server: poll gently, allow a loaded machine a minute."""
    return wait_until(predicate, timeout_s=60.0, step_s=0.2)


def finished_run(capsys: pytest.CaptureFixture[str], run: str) -> Any:
    def done() -> Any:
        found = ok_json(capsys, "jobs", "show-run", run)
        return found if found["state"] not in ("queued", "running") else None

    return wait_for(done)


def test_jobs_cli_against_a_real_server(
    server_process: Callable[[], ServerProcess],  # noqa: F811
    project: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = server_process()
    p = str(project)
    # The records below belong to a model of the default project, where these jobs land: a
    # job run's key reaches the models of its job's project only.
    from modelyard.registry import Registry
    from modelyard.store import open_store

    model_crn = Registry(open_store()).create_model("watched")[0].crn

    # A job every second: runs are recorded, each with its log.
    created = ok_json(
        capsys,
        "jobs",
        "create",
        "ticker",
        "--project-dir",
        p,
        "--script",
        "tick.py",
        "--every",
        "1s",
        "--timeout",
        "30s",
    )
    assert created["warnings"] == [] and created["job"]["every_ms"] == 1000
    assert created["job"]["next_run_ms"] is not None

    def two_succeeded() -> Any:
        runs = ok_json(capsys, "jobs", "runs", "ticker")
        done = [r for r in runs if r["state"] == "succeeded"]
        return done if len(done) >= 2 else None

    done = wait_for(two_succeeded)
    assert {r["trigger"] for r in done} <= {"schedule", "catch-up"}
    code, out, _ = cli(capsys, "jobs", "logs", done[0]["uuid"])
    assert code == 0 and "tick ticker" in out
    as_json = ok_json(capsys, "jobs", "logs", done[0]["uuid"])
    assert as_json == {"run": done[0]["id"], "state": "succeeded", "log": out}
    code, out, _ = cli(capsys, "jobs", "pause", "ticker")
    assert code == 0 and "paused job ticker" in out
    listed = {j["name"]: j for j in ok_json(capsys, "jobs", "list")}
    assert listed["ticker"]["paused"] is True and listed["ticker"]["last_run"] is not None
    assert any(j["builtin"] for j in listed.values())  # maintenance jobs, visible as jobs
    code, out, _ = cli(capsys, "jobs", "list")
    assert code == 0 and "ticker" in out and "every 1s" in out

    # A run reading and writing metrics through the SDK, with the run's own URL and key.
    records = [
        {
            "predictionUuid": f"p-{i}",
            "modelCrn": model_crn,
            "modelBuildCrn": BUILD,
            "modelDeploymentCrn": DEPLOYMENT,
            "startTimeStampMs": T0 + i,
            "endTimeStampMs": T0 + 1 + i,
            "metrics": {"label": i % 2},
        }
        for i in range(7)
    ]
    admin = {"Authorization": f"Bearer {server.admin}"}
    written = httpx.post(
        server.url + "/api/v1/metrics/predictions", json={"predictions": records}, headers=admin
    )
    assert written.status_code == 204, written.text
    ok_json(
        capsys,
        "jobs",
        "create",
        "monitor",
        "--project-dir",
        p,
        "--script",
        "monitor.py",
        "--manual",
        "--env",
        f"WATCHED={DEPLOYMENT}",
    )
    run = ok_json(capsys, "jobs", "run", "monitor")
    assert run["trigger"] == "manual"
    shown = finished_run(capsys, run["uuid"])
    code, log, _ = cli(capsys, "jobs", "logs", run["uuid"])
    assert shown["state"] == "succeeded", log
    assert [(m["key"], m["value"]) for m in shown["metrics"]] == [("rows", 7)]
    assert f"read 7 records for monitor run {run['uuid']}" in log
    assert "own run: 200 running" in log
    aggregates = httpx.get(
        server.url + "/api/v1/metrics",
        params={"modelDeploymentCrn": DEPLOYMENT, "kind": "aggregate"},
        headers=admin,
    ).json()["metrics"]
    assert [a["metrics"] for a in aggregates] == [{"count": 7, "positives": 3}]
    # The run's key was revoked when it ended.
    keys = httpx.get(server.url + "/api/v1/keys", headers=admin).json()["keys"]
    run_keys = [k for k in keys if k.get("scope") == run["id"]]
    assert run_keys and all(k["revoked_ms"] for k in run_keys)

    # A monitor as a job (--monitor SPEC): the monitor runner computes the past hour's window.
    hour = 3_600_000
    start = (int(time.time() * 1000) // hour - 2) * hour
    scored = [
        {
            "predictionUuid": f"w-{i}",
            "modelCrn": model_crn,
            "modelBuildCrn": BUILD,
            "modelDeploymentCrn": WATCHED,
            "startTimeStampMs": start + 1000 * i,
            "endTimeStampMs": start + 1000 * i + 5,
            "metrics": {"p": i / 40, "y": int(i >= 20)},
        }
        for i in range(40)
    ]
    written = httpx.post(
        server.url + "/api/v1/metrics/predictions", json={"predictions": scored}, headers=admin
    )
    assert written.status_code == 204, written.text
    (project / "watch.yaml").write_text(
        f"name: watch\ndeployment: {WATCHED}\nprediction: p\nlabel: y\nwindow: 1h\n"
        "metrics: [classification, label_coverage]\n"
    )
    job = ok_json(
        capsys, "jobs", "create", "watch", "--project-dir", p, "--monitor", "watch.yaml", "--manual"
    )["job"]
    assert job["script"] is None and job["monitor"] == "watch.yaml" and job["args"] == []
    run = ok_json(capsys, "jobs", "run", "watch")
    shown = finished_run(capsys, run["uuid"])
    code, log, _ = cli(capsys, "jobs", "logs", run["uuid"])
    assert shown["state"] == "succeeded", log
    assert "window(s) computed for monitor watch" in log
    windows = httpx.get(
        server.url + "/api/v1/metrics",
        params={"modelDeploymentCrn": WATCHED, "kind": "aggregate"},
        headers=admin,
    ).json()["metrics"]
    first = [w["metrics"] for w in windows if w["startTimeStampMs"] == start]
    assert first and first[0]["n"] == 40 and first[0]["roc_auc"] == 1.0

    # Cancel: a follower of the log ends when the run does.
    ok_json(
        capsys, "jobs", "create", "sleepy", "--project-dir", p, "--script", "sleeper.py", "--manual"
    )
    run = ok_json(capsys, "jobs", "run", "sleepy")
    wait_for(lambda: ok_json(capsys, "jobs", "show-run", run["uuid"])["state"] == "running")
    follower = subprocess.Popen(
        [str(Path(sys.executable).parent / "modelyard"), "jobs", "logs", run["uuid"], "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        wait_for(lambda: "going to sleep" in cli(capsys, "jobs", "logs", run["uuid"])[1])
        cancelled = ok_json(capsys, "jobs", "cancel", run["uuid"])
        assert cancelled["state"] == "cancelled"
        out_bytes, err_bytes = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err_bytes
    assert b"going to sleep" in out_bytes
    code, _, err = cli(capsys, "jobs", "cancel", run["uuid"])
    assert code == 2 and "already ended" in err
    followed = ok_json(capsys, "jobs", "logs", run["uuid"], "--follow")
    assert followed["state"] == "cancelled" and "going to sleep" in followed["log"]

    # A pipeline: a -> b -> c, each after the success of the one before.
    ok_json(
        capsys,
        "jobs",
        "create",
        "step-a",
        "--project-dir",
        p,
        "--script",
        "step.py",
        "--args",
        "a",
        "--manual",
    )
    ok_json(
        capsys,
        "jobs",
        "create",
        "step-b",
        "--project-dir",
        p,
        "--script",
        "step.py",
        "--args",
        "b",
        "--after",
        "step-a",
    )
    ok_json(
        capsys,
        "jobs",
        "create",
        "step-c",
        "--project-dir",
        p,
        "--script",
        "step.py",
        "--args",
        "c",
        "--after",
        "step-b",
    )
    first = ok_json(capsys, "jobs", "run", "step-a")

    def c_done() -> Any:
        runs = ok_json(capsys, "jobs", "runs", "step-c")
        return runs if runs and runs[0]["state"] == "succeeded" else None

    c_runs = wait_for(c_done)
    b_runs = ok_json(capsys, "jobs", "runs", "step-b")
    assert [r["trigger"] for r in b_runs] == ["parent"] and c_runs[0]["trigger"] == "parent"
    assert b_runs[0]["slot_ms"] == first["slot_ms"] == c_runs[0]["slot_ms"]
    assert b_runs[0]["parent_run_id"] == first["id"]
    assert "step c" in cli(capsys, "jobs", "logs", c_runs[0]["uuid"])[1]

    # Bad input: a clear error, nothing changed.
    def definitions() -> list[tuple[str, int]]:
        return [(j["name"], j["updated_ms"]) for j in ok_json(capsys, "jobs", "list")]

    before = definitions()
    (project / ".gitignore").write_text("ignored_*.py\n")
    (project / "ignored_job.py").write_text(STEP)
    for args, named in (
        (["--script", "ignored_job.py", "--manual"], "pattern 'ignored_*.py' in .gitignore"),
        (["--script", "tick.py", "--manual", "--requirements", "missing.txt"], "missing.txt"),
        (["--script", "tick.py", "--cron", "*/5 * * 13 *"], "month"),
        (["--script", "missing.py", "--manual"], "missing.py"),
        (["--script", "tick.py", "--after", "no-such-job"], "no-such-job"),
        (["--script", "tick.py", "--manual", "--timeout", "8d"], "timeout_ms"),
        (["--script", "tick.py", "--every", "soon"], "--every"),
        (["--script", "tick.py"], "exactly one schedule, got none"),
        (["--script", "tick.py", "--every", "1s", "--manual"], "got --every, --manual"),
    ):
        code, _, err = cli(capsys, "jobs", "create", "bad", "--project-dir", p, *args)
        assert code == 2 and named in err, (args, err)
    code, _, err = cli(capsys, "jobs", "update", "step-a", "--after", "step-c")
    assert code == 2 and "step-a -> step-b -> step-c -> step-a" in err, err
    assert definitions() == before

    # An unreachable webhook is a warning, not a failure.
    code, out, err = cli(
        capsys,
        "jobs",
        "update",
        "step-a",
        "--notify",
        "http://127.0.0.1:9/hook",
        "--notify-on",
        "failure,timeout",
    )
    assert code == 0 and "warning: webhook http://127.0.0.1:9/hook is not reachable" in err
    assert ok_json(capsys, "jobs", "show", "step-a")["notify"] == ["http://127.0.0.1:9/hook"]

    # --requirements: stored with the job and used by its runs (this file lists nothing, so the
    # run says it keeps the base environment; tests/jobs/test_project_files.py installs one).
    # The server keeps the folder uploaded at creation: a new file travels with a new upload.
    (project / "requirements.txt").write_text("# nothing to install\n")
    code, _, err = cli(
        capsys,
        "jobs",
        "update",
        "step-a",
        "--project-dir",
        str(project),
        "--requirements",
        "requirements.txt",
    )
    assert code == 0, err
    assert ok_json(capsys, "jobs", "show", "step-a")["requirements"] == "requirements.txt"
    run = ok_json(capsys, "jobs", "run", "step-a")
    assert finished_run(capsys, run["uuid"])["state"] == "succeeded"
    log = ok_json(capsys, "jobs", "logs", run["uuid"])["log"]
    assert "requirements file requirements.txt lists nothing" in log and "step a" in log
    # That run started the pipeline again: let step-c finish before it is deleted.
    wait_for(
        lambda: (
            [r["state"] for r in ok_json(capsys, "jobs", "runs", "step-c")]
            == ["succeeded", "succeeded"]
        )
    )

    code, out, _ = cli(capsys, "jobs", "delete", "step-c")
    assert code == 0 and "deleted job step-c" in out
    code, _, err = cli(capsys, "jobs", "show", "step-c")
    assert code == 2 and "step-c" in err
