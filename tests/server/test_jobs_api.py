"""``/api/v1/jobs`` and ``/api/v1/runs`` on the real app in-process: real SQLite, the real
scheduler and runtime (runs are real processes), every route, bad input that changes nothing,
webhook warnings against real local HTTP receivers, and who may do what."""

from __future__ import annotations

import asyncio
import http.server
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Api

SLEEPER = """
import sys, time
print("going to sleep", flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 60)
"""

HELLO = """
import os, sys
print("hello from", os.environ["MODELYARD_JOB"], "args", sys.argv[1:], flush=True)
print("slot", os.environ["MODELYARD_SCHEDULED_AT"], flush=True)
if os.environ.get("FAIL"):
    sys.exit(3)
"""


@pytest.fixture
def jobs_project(tmp_path: Path) -> Path:
    root = tmp_path / "jobs-project"
    root.mkdir()
    (root / "hello.py").write_text(textwrap.dedent(HELLO))
    (root / "sleeper.py").write_text(textwrap.dedent(SLEEPER))
    return root


@pytest.fixture
def receiver() -> Iterator[str]:
    """A local HTTP server that answers anything: a reachable webhook."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(405)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_run(api: Api, uuid: str, states: set[str], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await api.client.get(f"/api/v1/runs/{uuid}", headers=api.auth())
        assert answer.status_code == 200, answer.text
        if answer.json()["state"] in states:
            return answer.json()
        assert time.monotonic() < deadline, answer.json()
        await asyncio.sleep(0.1)


def _job(root: Path, name: str = "hello", /, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "project": str(root), "script": "hello.py"}
    if not any(k in extra for k in ("cron", "every_ms", "after", "manual")):
        body["manual"] = True
    body.update(extra)
    return body


def test_create_show_list_update_pause_resume_delete(with_api: Any, jobs_project: Path) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        created = await c.post(
            "/api/v1/jobs",
            json=_job(
                jobs_project,
                "nightly",
                cron="30 2 * * *",
                timezone="Europe/Paris",
                args=["--window", "1d"],
                env={"TOKEN": "s3cret"},
                timeout_ms=600_000,
                retries=2,
                retry_backoff_ms=30_000,
                overlap="queue",
                catch_up="all",
            ),
            headers=api.auth(),
        )
        assert created.status_code == 201, created.text
        job = created.json()["job"]
        assert created.json()["warnings"] == []
        assert job["schedule"] == "cron" and job["timezone"] == "Europe/Paris"
        assert job["args"] == ["--window", "1d"] and job["overlap"] == "queue"
        assert (
            job["catch_up"] == "all" and job["retries"] == 2 and job["env"] == {"TOKEN": "s3cret"}
        )
        # The next 02:30 in Paris, and no run yet.
        assert job["next_run_ms"] > time.time() * 1000 and job["last_run"] is None
        assert job["next_run_at"].endswith(("00:30:00.000Z", "01:30:00.000Z"))

        child = await c.post(
            "/api/v1/jobs",
            json=_job(jobs_project, "after-nightly", after="nightly"),
            headers=api.auth(),
        )
        assert child.status_code == 201, child.text
        assert child.json()["job"]["after"] == "nightly"
        assert child.json()["job"]["next_run_ms"] is None  # runs follow the parent's

        listed = (await c.get("/api/v1/jobs", headers=api.auth())).json()["jobs"]
        names = [j["name"] for j in listed]
        assert {"nightly", "after-nightly"} <= set(names)
        # The built-in maintenance jobs are jobs like any other.
        builtin = [j for j in listed if j["builtin"]]
        assert builtin and all(j["next_run_ms"] for j in builtin)

        shown = (await c.get("/api/v1/jobs/nightly", headers=api.auth())).json()
        assert shown["id"] == job["id"]

        patched = await c.patch(
            "/api/v1/jobs/nightly", json={"every_ms": 60_000, "retries": 0}, headers=api.auth()
        )
        assert patched.status_code == 200, patched.text
        after = patched.json()["job"]
        assert after["schedule"] == "every" and after["cron"] is None
        assert after["timezone"] == "UTC" and after["retries"] == 0
        assert after["args"] == ["--window", "1d"]  # what was not given stays

        paused = (await c.post("/api/v1/jobs/nightly/pause", headers=api.auth())).json()
        assert paused["paused"] is True and paused["next_run_ms"] is None
        resumed = (await c.post("/api/v1/jobs/nightly/resume", headers=api.auth())).json()
        assert resumed["paused"] is False and resumed["next_run_ms"] is not None

        refused = await c.delete("/api/v1/jobs/nightly", headers=api.auth())
        assert refused.status_code == 409 and "after-nightly" in refused.json()["error"]["message"]
        assert (await c.delete("/api/v1/jobs/after-nightly", headers=api.auth())).json() == {
            "deleted": "after-nightly"
        }
        assert (await c.delete("/api/v1/jobs/nightly", headers=api.auth())).status_code == 200
        gone = await c.get("/api/v1/jobs/nightly", headers=api.auth())
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
        maintenance = builtin[0]["name"]
        kept = await c.delete(f"/api/v1/jobs/{maintenance}", headers=api.auth())
        assert kept.status_code == 409 and "built in" in kept.json()["error"]["message"]

    with_api(scenario)


@pytest.mark.parametrize(
    ("extra", "status", "named"),
    [
        ({"cron": "*/5 * * 13 *"}, 400, "month"),
        ({"cron": "61 * * * *"}, 400, "minute"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, 400, "Mars/Olympus"),
        ({"every_ms": 10}, 400, "every_ms"),
        ({"cron": "* * * * *", "manual": True}, 400, "exactly one schedule"),
        ({"after": "no-such-parent"}, 404, "no-such-parent"),
        ({"timeout_ms": 10}, 400, "timeout_ms"),
        ({"timeout_ms": 8 * 86_400_000}, 400, "timeout_ms"),
        ({"retries": 11}, 400, "retries"),
        ({"retries": "3"}, 400, "retries"),
        ({"overlap": "sometimes"}, 400, "overlap"),
        ({"catch_up": "some"}, 400, "catch_up"),
        ({"script": "missing.py"}, 400, "missing.py"),
        ({"script": "../hello.py"}, 400, "script"),
        ({"requirements": "missing.txt"}, 400, "missing.txt"),
        ({"requirements": "../requirements.txt"}, 400, "requirements"),
        ({"project": "relative/dir"}, 400, "project"),
        ({"env": {"MODELYARD_API_KEY": "x"}}, 400, "MODELYARD_API_KEY"),
        ({"notify": ["ftp://example.com/x"]}, 400, "ftp"),
        ({"notify_on": ["sometimes"]}, 400, "notify_on"),
        ({"colour": "blue"}, 400, "colour"),
        ({"name": "Not A Name"}, 400, "Not A Name"),
    ],
)
def test_bad_input_is_refused_by_name_and_changes_nothing(
    with_api: Any, jobs_project: Path, extra: dict[str, Any], status: int, named: str
) -> None:
    async def scenario(api: Api) -> None:
        before = (await api.client.get("/api/v1/jobs", headers=api.auth())).json()
        answer = await api.client.post(
            "/api/v1/jobs", json=_job(jobs_project, **extra), headers=api.auth()
        )
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert named in error["message"], error
        assert (await api.client.get("/api/v1/jobs", headers=api.auth())).json() == before

    with_api(scenario)


def test_a_cycle_is_refused_and_the_job_is_unchanged(with_api: Any, jobs_project: Path) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        for name, extra in (("a", {}), ("b", {"after": "a"}), ("c", {"after": "b"})):
            answer = await c.post(
                "/api/v1/jobs", json=_job(jobs_project, name, **extra), headers=api.auth()
            )
            assert answer.status_code == 201, answer.text
        before = (await c.get("/api/v1/jobs/a", headers=api.auth())).json()
        cycle = await c.patch("/api/v1/jobs/a", json={"after": "c"}, headers=api.auth())
        assert cycle.status_code == 400
        assert "a -> b -> c -> a" in cycle.json()["error"]["message"]
        assert (await c.get("/api/v1/jobs/a", headers=api.auth())).json() == before
        itself = await c.patch("/api/v1/jobs/b", json={"after": "b"}, headers=api.auth())
        assert itself.status_code == 400 and "itself" in itself.json()["error"]["message"]
        missing = await c.patch("/api/v1/jobs/b", json={"script": "nope.py"}, headers=api.auth())
        assert missing.status_code == 400 and "nope.py" in missing.json()["error"]["message"]

    with_api(scenario)


def test_webhooks_are_tried_at_creation_unreachable_is_a_warning(
    with_api: Any, jobs_project: Path, receiver: str
) -> None:
    async def scenario(api: Api) -> None:
        dead = f"http://127.0.0.1:{_closed_port()}/hook"
        answer = await api.client.post(
            "/api/v1/jobs",
            json=_job(
                jobs_project,
                notify=[receiver, dead, "ops@example.com"],
                notify_on=["failure", "success"],
            ),
            headers=api.auth(),
        )
        assert answer.status_code == 201, answer.text
        warnings = answer.json()["warnings"]
        assert len(warnings) == 1 and dead in warnings[0] and "not reachable" in warnings[0]
        assert answer.json()["job"]["notify"] == [receiver, dead, "ops@example.com"]
        patched = await api.client.patch(
            "/api/v1/jobs/hello", json={"notify": [receiver]}, headers=api.auth()
        )
        assert patched.status_code == 200 and patched.json()["warnings"] == []

    with_api(scenario)


def test_run_now_runs_logs_metrics_and_history(with_api: Any, jobs_project: Path) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        await c.post("/api/v1/jobs", json=_job(jobs_project, args=["x", "y"]), headers=api.auth())
        started = await c.post("/api/v1/jobs/hello/run", headers=api.auth())
        assert started.status_code == 202, started.text
        run = started.json()
        assert run["trigger"] == "manual" and run["job"] == "hello"
        assert run["id"] == f"crn:modelyard:run/{run['uuid']}"
        done = await _wait_run(api, run["uuid"], {"succeeded", "failed"})
        assert done["state"] == "succeeded" and done["exit_code"] == 0
        assert done["duration_ms"] is not None and done["metrics"] == []

        # Metrics posted for the run (as the SDK's remote backend does) show with it.
        posted = await c.post(
            f"/api/v1/runs/{run['uuid']}/metrics",
            json={"metrics": {"rows": 10, "auc": 0.9}},
            headers=api.auth(),
        )
        assert posted.status_code == 204, posted.text
        shown = (await c.get(f"/api/v1/runs/{run['uuid']}", headers=api.auth())).json()
        assert {m["key"]: m["value"] for m in shown["metrics"]} == {"rows": 10, "auc": 0.9}

        logs = await c.get(f"/api/v1/runs/{run['uuid']}/logs", headers=api.auth())
        assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
        assert "hello from hello args ['x', 'y']" in logs.text
        tail = await c.get(f"/api/v1/runs/{run['uuid']}/logs?tail=2", headers=api.auth())
        assert tail.text.splitlines() == logs.text.splitlines()[-2:]
        assert tail.text.count("\n") == 2 and "hello from" not in tail.text
        # follow on a finished run gives the whole log and ends.
        followed = await c.get(f"/api/v1/runs/{run['uuid']}/logs?follow=1", headers=api.auth())
        assert followed.text == logs.text

        runs = (await c.get("/api/v1/jobs/hello/runs", headers=api.auth())).json()["runs"]
        assert [r["id"] for r in runs] == [run["id"]]
        job = (await c.get("/api/v1/jobs/hello", headers=api.auth())).json()
        assert job["last_run"]["state"] == "succeeded" and job["next_run_ms"] is None

        # A failing run: its state and exit code.
        await c.patch("/api/v1/jobs/hello", json={"env": {"FAIL": "1"}}, headers=api.auth())
        failed = (await c.post("/api/v1/jobs/hello/run", headers=api.auth())).json()
        failed = await _wait_run(api, failed["uuid"], {"succeeded", "failed"})
        assert failed["state"] == "failed" and failed["exit_code"] == 3
        only = await c.get("/api/v1/jobs/hello/runs?state=failed", headers=api.auth())
        assert [r["id"] for r in only.json()["runs"]] == [failed["id"]]

        for bad in ("not-a-uuid", "..%2F..%2Fetc"):
            answer = await c.get(f"/api/v1/runs/{bad}/logs", headers=api.auth())
            assert answer.status_code in (400, 404), answer.text
        unknown = await c.get(
            "/api/v1/runs/00000000-0000-4000-8000-000000000000", headers=api.auth()
        )
        assert unknown.status_code == 404

    with_api(scenario)


def test_cancel_a_running_run_and_follow_its_log(with_api: Any, jobs_project: Path) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        await c.post(
            "/api/v1/jobs",
            json=_job(jobs_project, "sleepy", script="sleeper.py"),
            headers=api.auth(),
        )
        run = (await c.post("/api/v1/jobs/sleepy/run", headers=api.auth())).json()
        await _wait_run(api, run["uuid"], {"running"})
        # overlap=skip: a second run-now while one runs is refused and records nothing.
        again = await c.post("/api/v1/jobs/sleepy/run", headers=api.auth())
        assert again.status_code == 409 and "overlap" in again.json()["error"]["message"]

        async def follow() -> str:
            answer = await c.get(f"/api/v1/runs/{run['uuid']}/logs?follow=1", headers=api.auth())
            return answer.text

        follower = asyncio.create_task(follow())
        deadline = time.monotonic() + 30
        while (
            "going to sleep"
            not in (await c.get(f"/api/v1/runs/{run['uuid']}/logs", headers=api.auth())).text
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        cancelled = await c.post(f"/api/v1/runs/{run['uuid']}/cancel", headers=api.auth())
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled"
        # The follower ends by itself once the run has ended.
        text = await asyncio.wait_for(follower, 30)
        assert "going to sleep" in text
        twice = await c.post(f"/api/v1/runs/{run['uuid']}/cancel", headers=api.auth())
        assert twice.status_code == 409 and "already ended" in twice.json()["error"]["message"]
        runs = (await c.get("/api/v1/jobs/sleepy/runs", headers=api.auth())).json()["runs"]
        assert [r["state"] for r in runs] == ["cancelled"]

    with_api(scenario)


def test_monitor_jobs_run_the_monitor_runner(with_api: Any, jobs_project: Path) -> None:
    async def scenario(api: Api) -> None:
        from modelyard.ids import new_crn
        from modelyard.store.base import Identity

        (jobs_project / "churn.yaml").write_text("name: x\n")
        invalid = await api.client.post(
            "/api/v1/jobs",
            json={
                "name": "bad",
                "project": str(jobs_project),
                "monitor": "churn.yaml",
                "manual": True,
            },
            headers=api.auth(),
        )
        # The spec is checked at creation, as a run would check it (issue 11).
        assert invalid.status_code == 400 and "'deployment'" in invalid.text, invalid.text
        watched = Identity(new_crn("model"), new_crn("build"), new_crn("deployment"))
        api.services.store.register_identity(watched)
        (jobs_project / "churn.yaml").write_text(
            f"name: x\ndeployment: {watched.deployment_crn}\nprediction: p\nwindow: 1h\n"
            "metrics: [estimated_performance]\n"
        )
        refused = await api.client.post(
            "/api/v1/jobs",
            json={
                "name": "churn-monitor",
                "project": str(jobs_project),
                "monitor": "churn.yaml",
                "cron": "99 * * * *",
            },
            headers=api.auth(),
        )
        assert refused.status_code == 400
        assert not (jobs_project / ".modelyard").exists()  # a refused job writes nothing
        answer = await api.client.post(
            "/api/v1/jobs",
            json={
                "name": "churn-monitor",
                "project": str(jobs_project),
                "monitor": "churn.yaml",
                "every_ms": 300_000,
            },
            headers=api.auth(),
        )
        assert answer.status_code == 201, answer.text
        job = answer.json()["job"]
        # The job runs the installed monitor runner: no launcher file is written to the project.
        assert job["script"] is None and job["monitor"] == "churn.yaml" and job["args"] == []
        assert not (jobs_project / ".modelyard").exists()
        missing = await api.client.post(
            "/api/v1/jobs",
            json={
                "name": "other",
                "project": str(jobs_project),
                "monitor": "nope.yaml",
                "manual": True,
            },
            headers=api.auth(),
        )
        assert missing.status_code == 400 and "nope.yaml" in missing.json()["error"]["message"]
        both = await api.client.post(
            "/api/v1/jobs",
            json=_job(jobs_project, "both", monitor="churn.yaml"),
            headers=api.auth(),
        )
        assert both.status_code == 400 and "either" in both.json()["error"]["message"]
        # The monitor runner really runs, even in a project whose ignore rules leave out
        # .modelyard/: a spec broken after the job was created is its error, in the run's log.
        (jobs_project / "churn.yaml").write_text("name: x\n")
        (jobs_project / ".gitignore").write_text(".modelyard/\n")
        run = (await api.client.post("/api/v1/jobs/churn-monitor/run", headers=api.auth())).json()
        done = await _wait_run(api, run["uuid"], {"succeeded", "failed"})
        assert done["state"] == "failed" and done["exit_code"] == 2
        log = (await api.client.get(f"/api/v1/runs/{run['uuid']}/logs", headers=api.auth())).text
        assert "error:" in log

    with_api(scenario)


def test_files_the_snapshot_leaves_out_are_refused_naming_the_rule(
    with_api: Any, jobs_project: Path
) -> None:
    """Runs execute in the project's snapshot, which applies .gitignore/.modelyardignore: a
    script, monitor spec or requirements file those rules leave out is refused at creation and
    at update (naming the file, the ignore file and its pattern), and nothing changes."""
    (jobs_project / ".gitignore").write_text("generated/\n*.txt\n")
    (jobs_project / ".modelyardignore").write_text("private_*.py\n")
    (jobs_project / "generated").mkdir()
    (jobs_project / "generated" / "job.py").write_text("print('hi')\n")
    (jobs_project / "private_job.py").write_text("print('hi')\n")
    (jobs_project / "watch.yaml").write_text("name: w\n")
    (jobs_project / "requirements.txt").write_text("numpy\n")
    (jobs_project / "reqs.in").write_text("--no-index\n")

    async def scenario(api: Api) -> None:
        c = api.client
        refused = [
            (_job(jobs_project, "a", script="generated/job.py"), "generated/job.py",
             "pattern 'generated/' in .gitignore"),
            (_job(jobs_project, "b", script="private_job.py"), "private_job.py",
             "pattern 'private_*.py' in .modelyardignore"),
            (_job(jobs_project, "c", requirements="requirements.txt"), "requirements.txt",
             "pattern '*.txt' in .gitignore"),
        ]  # fmt: skip
        for body, named, rule in refused:
            answer = await c.post("/api/v1/jobs", json=body, headers=api.auth())
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert named in error["message"] and rule in error["message"], error
        (jobs_project / ".gitignore").write_text("generated/\n*.txt\n*.yaml\n")
        answer = await c.post(
            "/api/v1/jobs",
            json={
                "name": "m",
                "project": str(jobs_project),
                "monitor": "watch.yaml",
                "manual": True,
            },
            headers=api.auth(),
        )
        assert answer.status_code == 400 and "'*.yaml' in .gitignore" in answer.text
        listed = (await c.get("/api/v1/jobs", headers=api.auth())).json()["jobs"]
        assert [j["name"] for j in listed if not j["builtin"]] == []

        created = await c.post(
            "/api/v1/jobs", json=_job(jobs_project, requirements="reqs.in"), headers=api.auth()
        )
        assert created.status_code == 201, created.text
        before = created.json()["job"]
        assert before["requirements"] == "reqs.in" and before["monitor"] is None
        for change, rule in (
            ({"script": "generated/job.py"}, "'generated/'"),
            ({"requirements": "requirements.txt"}, "'*.txt'"),
            ({"monitor": "watch.yaml"}, "'*.yaml'"),
        ):
            answer = await c.patch("/api/v1/jobs/hello", json=change, headers=api.auth())
            assert answer.status_code == 400 and rule in answer.text, answer.text
        # A rule added after creation is caught by the next change of the job's files too.
        (jobs_project / ".modelyardignore").write_text("reqs.in\n")
        answer = await c.patch("/api/v1/jobs/hello", json={"retries": 1}, headers=api.auth())
        assert answer.status_code == 200  # not a change of its files: not re-checked
        answer = await c.patch(
            "/api/v1/jobs/hello", json={"project": str(jobs_project)}, headers=api.auth()
        )
        assert answer.status_code == 400 and "'reqs.in' in .modelyardignore" in answer.text
        after = (await c.get("/api/v1/jobs/hello", headers=api.auth())).json()
        assert after["requirements"] == "reqs.in" and after["retries"] == 1
        cleared = await c.patch(
            "/api/v1/jobs/hello", json={"requirements": None}, headers=api.auth()
        )
        assert cleared.status_code == 200 and cleared.json()["job"]["requirements"] is None

    with_api(scenario)


def test_roles_operators_read_and_run_run_keys_read_their_own_run(
    with_api: Any, jobs_project: Path
) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        registry = api.services.registry
        # What a `user` key of an earlier release became: admin's, narrowed to the default
        # project as an operator (tests/server/test_jobs_access.py has every role).
        _, user = registry.create_api_key(
            "alice", role="user", user="admin", project="default", project_role="operator"
        )
        await c.post("/api/v1/jobs", json=_job(jobs_project), headers=api.auth())
        mine = (await c.post("/api/v1/jobs/hello/run", headers=api.auth())).json()
        await _wait_run(api, mine["uuid"], {"succeeded"})
        other = (await c.post("/api/v1/jobs/hello/run", headers=api.auth())).json()
        await _wait_run(api, other["uuid"], {"succeeded"})
        _, run_key = registry.create_api_key("a run", role="run", scope=mine["id"])

        # An operator reads everything, runs and cancels, and changes nothing.
        for path in (
            "/api/v1/jobs",
            "/api/v1/jobs/hello",
            "/api/v1/jobs/hello/runs",
            f"/api/v1/runs/{mine['uuid']}",
            f"/api/v1/runs/{mine['uuid']}/logs",
        ):
            assert (await c.get(path, headers=api.auth(user))).status_code == 200, path
        shown = (await c.get("/api/v1/jobs/hello", headers=api.auth(user))).json()
        assert shown["env"] == {}
        for method, path in (
            ("POST", "/api/v1/jobs"),
            ("PATCH", "/api/v1/jobs/hello"),
            ("DELETE", "/api/v1/jobs/hello"),
            ("POST", "/api/v1/jobs/hello/pause"),
            ("POST", "/api/v1/jobs/hello/resume"),
            ("POST", "/api/v1/jobs/hello/run"),
            ("POST", f"/api/v1/runs/{mine['uuid']}/cancel"),
        ):
            runs = path.endswith(("/run", "/cancel"))
            answer = await c.request(method, path, json={}, headers=api.auth(user))
            if runs:
                assert answer.status_code not in (401, 403, 404), (method, path, answer.text)
            else:
                assert answer.status_code == 403, (method, path, answer.text)
                assert "needs contributor" in answer.json()["error"]["message"]
            answer = await c.request(method, path, json={}, headers=api.auth(run_key))
            assert answer.status_code == 403, (method, path, answer.text)

        # A run key: its own run (and its log and metrics); any other run is unknown to it.
        own = await c.get(f"/api/v1/runs/{mine['uuid']}", headers=api.auth(run_key))
        assert own.status_code == 200
        log = await c.get(f"/api/v1/runs/{mine['uuid']}/logs", headers=api.auth(run_key))
        assert log.status_code == 200
        posted = await c.post(
            f"/api/v1/runs/{mine['uuid']}/metrics",
            json={"metrics": {"n": 1}},
            headers=api.auth(run_key),
        )
        assert posted.status_code == 204
        for method, path, body, status in (
            ("GET", f"/api/v1/runs/{other['uuid']}", None, 404),
            ("GET", f"/api/v1/runs/{other['uuid']}/logs", None, 404),
            ("POST", f"/api/v1/runs/{other['uuid']}/metrics", {"metrics": {"n": 1}}, 404),
            ("GET", "/api/v1/jobs", None, 403),
            ("GET", "/api/v1/jobs/hello/runs", None, 403),
        ):
            answer = await c.request(method, path, json=body, headers=api.auth(run_key))
            assert answer.status_code == status, (method, path, answer.text)
        assert [m.key for m in registry.run_metrics(mine["id"])] == ["n"]
        assert registry.run_metrics(other["id"]) == []

    with_api(scenario)


def test_without_a_scheduler_jobs_are_defined_but_not_run(
    with_api: Any, jobs_project: Path
) -> None:
    async def scenario(api: Api) -> None:
        assert api.services.scheduler is None
        created = await api.client.post("/api/v1/jobs", json=_job(jobs_project), headers=api.auth())
        assert created.status_code == 201
        refused = await api.client.post("/api/v1/jobs/hello/run", headers=api.auth())
        assert refused.status_code == 503 and "scheduler" in refused.json()["error"]["message"]

    with_api(scenario, jobs=False)


def test_the_scheduler_is_stopped_with_the_server(modelyard_home: Path, jobs_project: Path) -> None:
    """Shutdown cancels a running run (its process group is gone) and records it."""
    from _async import run

    from .conftest import serve

    async def scenario() -> tuple[str, Any]:
        async with serve(modelyard_home) as api:
            await api.client.post(
                "/api/v1/jobs", json=_job(jobs_project, script="sleeper.py"), headers=api.auth()
            )
            started = (await api.client.post("/api/v1/jobs/hello/run", headers=api.auth())).json()
            await _wait_run(api, started["uuid"], {"running"})
            registry = api.services.registry
        return started["id"], registry

    run_id, _ = run(scenario())

    async def after() -> str:
        async with serve(modelyard_home) as api:
            return str(api.services.registry.get_run(run_id).state)

    assert run(after()) == "cancelled"


@pytest.mark.postgres
def test_jobs_api_on_postgresql(
    with_api: Any, jobs_project: Path, postgres_schema_url: str
) -> None:
    async def scenario(api: Api) -> None:
        assert api.services.store.info().backend == "postgres"
        c = api.client
        for name, extra in (("a", {}), ("b", {"after": "a"})):
            created = await c.post(
                "/api/v1/jobs", json=_job(jobs_project, name, **extra), headers=api.auth()
            )
            assert created.status_code == 201, created.text
        cycle = await c.patch("/api/v1/jobs/a", json={"after": "b"}, headers=api.auth())
        assert cycle.status_code == 400 and "a -> b -> a" in cycle.json()["error"]["message"]
        run = (await c.post("/api/v1/jobs/a/run", headers=api.auth())).json()
        assert (await _wait_run(api, run["uuid"], {"succeeded", "failed"}))["state"] == "succeeded"
        posted = await c.post(
            f"/api/v1/runs/{run['uuid']}/metrics", json={"metrics": {"n": 2}}, headers=api.auth()
        )
        assert posted.status_code == 204
        shown = (await c.get(f"/api/v1/runs/{run['uuid']}", headers=api.auth())).json()
        assert shown["metrics"][0]["value"] == 2

        async def child_done() -> Any:
            runs = (await c.get("/api/v1/jobs/b/runs", headers=api.auth())).json()["runs"]
            return runs and runs[0]["state"] == "succeeded" and runs[0]

        deadline = time.monotonic() + 60
        while not (child := await child_done()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert child["trigger"] == "parent" and child["parent_run_id"] == run["id"]

    with_api(scenario, database_url=postgres_schema_url)
