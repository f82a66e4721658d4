"""A model's timeline on a real server: two builds deployed, a rollback, a replica killed that
the supervisor restarts. ``views.timeline`` and ``GET /api/v1/models/{name}/timeline`` must list
the first deploy, the second, the rollback and the replica's exit and restart in time order,
each with its kind; and the compare API's default sides are then the two builds.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import httpx
import pytest

from _wait import wait_until
from modelyard import clock
from modelyard.views import timeline as timeline_view

from .conftest import serve_in_thread

pytestmark = pytest.mark.slow

PREDICT = """
    import modelyard

    @modelyard.model_metrics
    def predict(args):
        return {"version": "VERSION", "double": args["x"] * 2}
"""


def _project(root: Path, version: str) -> Path:
    root.mkdir(parents=True)
    (root / "predict.py").write_text(textwrap.dedent(PREDICT).replace("VERSION", version))
    return root


def test_two_builds_a_rollback_and_a_restart_on_the_timeline(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with (
        serve_in_thread(home) as running,
        httpx.Client(base_url=running.url, headers=running.auth(), timeout=300) as client,
    ):
        services = running.app.state.services
        for version in ("v1", "v2"):
            answer = client.post(
                "/api/v1/models/churn/deploy",
                json={"project": str(_project(tmp_path / version, version)), "example": {"x": 1}},
            )
            assert answer.status_code == 201, answer.text
        back = client.post("/api/v1/models/churn/rollback")
        assert back.status_code == 200, back.text
        answer = client.post("/api/v1/models/churn/predict", json={"x": 2})
        assert answer.status_code == 200, answer.text
        assert answer.json()["response"]["prediction"]["version"] == "v1", answer.text

        # The rolled-back deployment's replica dies; the supervisor starts it again.
        active = back.json()["deployment"]["crn"]
        victim = services.controller.status("churn").replicas[0].state
        killed_ms = clock.now_ms()
        os.kill(victim.pid or 0, signal.SIGKILL)

        def restarted() -> bool:
            kinds = {e.kind for e in services.registry.events(active, 100)}
            return {"exited", "restarted"} <= kinds

        wait_until(restarted, 60.0, "the replica's exit and restart events", step_s=0.1)

        now = clock.now_ms()
        start = now - 3_600_000
        view = timeline_view.timeline(services, "churn", start, now + 1)
        api = client.get("/api/v1/models/churn/timeline", params={"range": "24h"})
        assert api.status_code == 200, api.text
        for answer in (view, api.json()):
            events = answer["events"]
            times = [e["at_ms"] for e in events]
            assert times == sorted(times), events
            story = [
                (e["kind"], e["title"].split(" (")[0], e.get("replica_event"))
                for e in events
                if e["kind"] in ("deploy", "rollback", "replica")
            ]
            assert story[:3] == [
                ("deploy", "Deployed build 1", None),
                ("deploy", "Deployed build 2", None),
                ("rollback", "Rolled back to build 1", None),
            ], story
            replica = [e for e in events if e["kind"] == "replica" and e["at_ms"] >= killed_ms]
            assert [e["replica_event"] for e in replica][:2] == ["exited", "restarted"], replica
            assert replica[1]["title"] == "Replica restarted", replica
            assert victim.replica_id in replica[1]["detail"], replica
            rollback_ms = next(e["at_ms"] for e in events if e["kind"] == "rollback")
            assert rollback_ms <= replica[0]["at_ms"] <= replica[1]["at_ms"], events

        # Compare's default sides: the build rolled back to against the one it replaced.
        compared = client.get("/api/v1/models/churn/compare")
        assert compared.status_code == 200, compared.text
        sides = compared.json()
        assert (sides["a"]["spec"], sides["b"]["spec"]) == ("build:2", "build:1"), sides
