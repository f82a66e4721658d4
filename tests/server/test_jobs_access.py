"""Who may do what with jobs and runs (``/api/v1/jobs*``, ``/api/v1/runs/*``) on the real app
in-process, with real runs: viewers read, operators run and cancel, contributors change;
naming a folder on the server's machine needs a server administrator; another project's jobs
and runs are unknown (404, the message of an unknown name); ``?project=`` places and filters."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ._world import World, make_world
from .conftest import Api

HELLO = """
print("hello", flush=True)
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "jobs-folder"
    root.mkdir()
    (root / "hello.py").write_text(textwrap.dedent(HELLO))
    return root


def _job(folder: Path, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "project": str(folder),
        "script": "hello.py",
        "manual": True,
        "env": {"TOKEN": "s3cret"},
    }


async def _wait_run(api: Api, uuid: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await api.client.get(f"/api/v1/runs/{uuid}", headers=api.auth())
        assert answer.status_code == 200, answer.text
        if answer.json()["state"] in ("succeeded", "failed"):
            return answer.json()
        assert time.monotonic() < deadline, answer.json()
        await asyncio.sleep(0.1)


async def _setup(api: Api, folder: Path) -> tuple[World, dict[str, Any]]:
    """Jobs ``churn-job`` (alice/churn) and ``fraud-job`` (bob/fraud), made by the server admin,
    and one finished run of ``churn-job``."""
    world = make_world(api)
    c = api.client
    for name, project in (("churn-job", "alice/churn"), ("fraud-job", "bob/fraud")):
        made = await c.post(
            "/api/v1/jobs", params={"project": project}, json=_job(folder, name), headers=api.auth()
        )
        assert made.status_code == 201, made.text
    run = (await c.post("/api/v1/jobs/churn-job/run", headers=api.auth())).json()
    return world, await _wait_run(api, run["uuid"])


def test_lists_and_reads_follow_the_project(
    with_api: Any, database: dict[str, Any], folder: Path
) -> None:
    async def scenario(api: Api) -> None:
        world, run = await _setup(api, folder)
        c = api.client
        made = (await c.get("/api/v1/jobs/churn-job", headers=api.auth())).json()
        assert made["project_crn"] == world.churn.crn
        for who, names in (
            ("vic", ["churn-job"]),
            ("bob", ["fraud-job"]),
            ("admin", ["churn-job", "fraud-job"]),
        ):
            listed = await c.get("/api/v1/jobs", headers=world.auth(who))
            shown = sorted(j["name"] for j in listed.json()["jobs"])
            assert [n for n in shown if n.endswith("-job")] == names, who
        only = await c.get(
            "/api/v1/jobs", params={"project": "bob/fraud"}, headers=world.auth("admin")
        )
        assert [j["name"] for j in only.json()["jobs"]] == ["fraud-job"]
        hidden = await c.get(
            "/api/v1/jobs", params={"project": "bob/fraud"}, headers=world.auth("vic")
        )
        unknown = await c.get(
            "/api/v1/jobs", params={"project": "bob/nope"}, headers=world.auth("vic")
        )
        assert hidden.status_code == unknown.status_code == 404

        uuid = run["uuid"]
        for path in (
            "/api/v1/jobs/churn-job",
            "/api/v1/jobs/churn-job/runs",
            f"/api/v1/runs/{uuid}",
            f"/api/v1/runs/{uuid}/logs",
        ):
            assert (await c.get(path, headers=world.auth("vic"))).status_code == 200, path
            hidden = await c.get(path, headers=world.auth("bob"))
            assert hidden.status_code == 404, (path, hidden.text)
        hidden = await c.get("/api/v1/jobs/churn-job", headers=world.auth("bob"))
        unknown = await c.get("/api/v1/jobs/no-such-job", headers=world.auth("bob"))
        assert hidden.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "no-such-job", "churn-job"
        )
        # env values: to who may change the job; names only to the others.
        for who, env in (("vic", {"TOKEN": "***"}), ("otto", {"TOKEN": "***"})):
            shown = (await c.get("/api/v1/jobs/churn-job", headers=world.auth(who))).json()
            assert shown["env"] == env, who
        shown = (await c.get("/api/v1/jobs/churn-job", headers=world.auth("cora"))).json()
        assert shown["env"] == {"TOKEN": "s3cret"}

    with_api(scenario, **database)


def test_changes_need_contributor_runs_need_operator(with_api: Any, folder: Path) -> None:
    async def scenario(api: Api) -> None:
        world, run = await _setup(api, folder)
        c = api.client
        uuid = run["uuid"]
        changes = (
            ("PATCH", "/api/v1/jobs/churn-job", {"retries": 1}),
            ("POST", "/api/v1/jobs/churn-job/pause", None),
            ("POST", "/api/v1/jobs/churn-job/resume", None),
        )
        operations = (
            ("POST", "/api/v1/jobs/churn-job/run", None),
            ("POST", f"/api/v1/runs/{uuid}/cancel", None),
        )
        for method, path, body in changes + operations:
            answer = await c.request(method, path, json=body, headers=world.auth("vic"))
            assert answer.status_code == 403, (method, path, answer.text)
            assert "user 'vic' is viewer in project 'alice/churn'" in answer.text
            answer = await c.request(method, path, json=body, headers=world.auth("bob"))
            assert answer.status_code == 404, (method, path, answer.text)
        for method, path, body in changes:
            answer = await c.request(method, path, json=body, headers=world.auth("otto"))
            assert answer.status_code == 403 and "needs contributor" in answer.text, path
            answer = await c.request(method, path, json=body, headers=world.auth("cora"))
            assert answer.status_code == 200, (path, answer.text)
        started = await c.post("/api/v1/jobs/churn-job/run", headers=world.auth("otto"))
        assert started.status_code == 202, started.text
        await _wait_run(api, started.json()["uuid"])
        cancelled = await c.post(f"/api/v1/runs/{uuid}/cancel", headers=world.auth("otto"))
        assert cancelled.status_code not in (401, 403, 404), cancelled.text
        refused = await c.delete("/api/v1/jobs/churn-job", headers=world.auth("otto"))
        assert refused.status_code == 403
        deleted = await c.delete("/api/v1/jobs/churn-job", headers=world.auth("cora"))
        assert deleted.status_code == 200 and deleted.json() == {"deleted": "churn-job"}

    with_api(scenario)


def test_creating_needs_contributor_and_a_server_folder_a_server_admin(
    with_api: Any, folder: Path
) -> None:
    async def scenario(api: Api) -> None:
        world = make_world(api)
        c = api.client
        churn = {"project": "alice/churn"}
        refused = await c.post(
            "/api/v1/jobs", params=churn, json=_job(folder, "j1"), headers=world.auth("otto")
        )
        assert refused.status_code == 403 and "needs contributor" in refused.text
        hidden = await c.post(
            "/api/v1/jobs", params=churn, json=_job(folder, "j1"), headers=world.auth("bob")
        )
        assert hidden.status_code == 404
        # A contributor may create jobs, but not from a folder on the server's machine.
        refused = await c.post(
            "/api/v1/jobs", params=churn, json=_job(folder, "j1"), headers=world.auth("cora")
        )
        assert refused.status_code == 403, refused.text
        message = refused.json()["error"]["message"]
        assert "user 'cora' is not a server administrator" in message
        assert repr(str(folder)) in message
        made = await c.post(
            "/api/v1/jobs", params=churn, json=_job(folder, "j1"), headers=world.auth("admin")
        )
        assert made.status_code == 201 and made.json()["job"]["project_crn"] == world.churn.crn
        # Without ?project= a job lands in the default project.
        made = await c.post("/api/v1/jobs", json=_job(folder, "j2"), headers=api.auth())
        default = api.services.registry.people.default_project()
        assert made.json()["job"]["project_crn"] == default.crn
        # Changing the folder is the same: a server administrator's.
        other = folder.parent / "other"
        other.mkdir()
        (other / "hello.py").write_text(HELLO)
        moved = await c.patch(
            "/api/v1/jobs/j1", json={"project": str(other)}, headers=world.auth("cora")
        )
        assert moved.status_code == 403 and "not a server administrator" in moved.text
        # A parent job in a project the contributor has no role in is unknown to them.
        await c.post(
            "/api/v1/jobs",
            params={"project": "bob/fraud"},
            json=_job(folder, "fraud-parent"),
            headers=api.auth(),
        )
        hidden = await c.patch(
            "/api/v1/jobs/j1", json={"after": "fraud-parent"}, headers=world.auth("cora")
        )
        unknown = await c.patch(
            "/api/v1/jobs/j1", json={"after": "no-parent"}, headers=world.auth("cora")
        )
        assert hidden.status_code == unknown.status_code == 404, (hidden.text, unknown.text)

    with_api(scenario)


def test_a_run_key_reads_its_own_run_only(
    with_api: Any, database: dict[str, Any], folder: Path
) -> None:
    async def scenario(api: Api) -> None:
        _, run = await _setup(api, folder)
        c = api.client
        registry = api.services.registry
        again = (await c.post("/api/v1/jobs/churn-job/run", headers=api.auth())).json()
        other = await _wait_run(api, again["uuid"])
        _, run_key = registry.create_api_key("a run", role="run", scope=run["id"])
        auth = {"Authorization": f"Bearer {run_key}"}
        for path in (f"/api/v1/runs/{run['uuid']}", f"/api/v1/runs/{run['uuid']}/logs"):
            assert (await c.get(path, headers=auth)).status_code == 200, path
        for path in (f"/api/v1/runs/{other['uuid']}", f"/api/v1/runs/{other['uuid']}/logs"):
            assert (await c.get(path, headers=auth)).status_code == 404, path
        for method, path in (
            ("GET", "/api/v1/jobs"),
            ("GET", "/api/v1/jobs/churn-job"),
            ("POST", "/api/v1/jobs/churn-job/run"),
            ("POST", f"/api/v1/runs/{run['uuid']}/cancel"),
        ):
            answer = await c.request(method, path, headers=auth)
            assert answer.status_code == 403, (method, path, answer.text)

    with_api(scenario, **database)


def test_a_monitor_job_watches_a_model_of_its_own_project(with_api: Any, folder: Path) -> None:
    """A run's key reaches only its job's project: a monitor job watching another project's
    model is refused when it is made, not at every run."""

    async def scenario(api: Api) -> None:
        world = make_world(api)
        for name, ident in (("mine", world.mine), ("theirs", world.theirs)):
            (folder / f"{name}.yaml").write_text(
                f"name: {name}\ndeployment: {ident.deployment_crn}\nprediction: score\n"
                "window: 1h\nmetrics: [label_coverage]\nlabel: y\n"
            )
        churn = {"project": "alice/churn"}

        async def create(name: str, spec: str) -> Any:
            body = {"name": name, "project": str(folder), "monitor": spec, "manual": True}
            return await api.client.post(
                "/api/v1/jobs", params=churn, json=body, headers=api.auth()
            )

        made = await create("watch-mine", "mine.yaml")
        assert made.status_code == 201, made.text
        refused = await create("watch-theirs", "theirs.yaml")
        assert refused.status_code == 400, refused.text
        message = refused.json()["error"]["message"]
        assert "watches model 'fraud', which is in another project than the job" in message
        # Moving the job's spec onto the other project's model is refused alike.
        moved = await api.client.patch(
            "/api/v1/jobs/watch-mine", json={"monitor": "theirs.yaml"}, headers=api.auth()
        )
        assert moved.status_code == 400 and "another project" in moved.text

    with_api(scenario)
