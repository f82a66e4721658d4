"""End to end on Ray: a real ``modelyard server --runtime ray`` process against the session's
two-node cluster, driven only through its REST API: deploy, call, roll a new build out while a
client loops (no failed request), scale, roll back, logs and replica states, the cluster view,
stop, delete; then a job run as a Ray job tracking a metric through its scoped key."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from _server import ServerProcess

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pydantic.*"),
]

PREDICT = """
import os

def predict(args):
    return {"double": args["x"] * 2, "pid": os.getpid()}
"""
TRAIN = """
import modelyard

modelyard.track_metric("loss", 0.25)
print("trained on ray")
"""


def _ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else None


def test_a_model_lives_its_whole_life_on_ray(server: ServerProcess, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "predict.py").write_text(textwrap.dedent(PREDICT))
    h = server.auth
    with httpx.Client(base_url=server.base, headers=h, timeout=180) as c:
        body = {"project": str(project), "example": {"x": 1}, "cpus": 0.25}
        first = _ok(c.post("/api/v1/models/dbl/deploy", json=body), 201)
        assert _ok(c.post("/api/v1/models/dbl/predict", json={"x": 3}))["response"]["double"] == 6

        # a new build rolls out while a client loops: no failed request
        (project / "predict.py").write_text(PREDICT.replace("* 2", "* 3"))
        statuses: list[int] = []
        done = threading.Event()

        def loop() -> None:
            with httpx.Client(base_url=server.base, headers=h, timeout=60) as own:
                while not done.is_set():
                    statuses.append(
                        own.post("/api/v1/models/dbl/predict", json={"x": 1}).status_code
                    )

        client = threading.Thread(target=loop)
        client.start()
        try:
            _ok(c.post("/api/v1/models/dbl/deploy", json=body), 201)
            time.sleep(0.5)
        finally:
            done.set()
            client.join(60)
        assert statuses and set(statuses) == {200}, sorted(set(statuses))
        answer = _ok(c.post("/api/v1/models/dbl/predict", json={"x": 2}))
        assert answer["response"]["double"] == 6

        # scale to 2, states, logs, and where Ray placed them
        assert _ok(c.post("/api/v1/models/dbl/scale", json={"replicas": 2}))["replicas"] == 2
        status = _ok(c.get("/api/v1/models/dbl"))
        states = [r["state"] for r in status["replicas"]]
        assert len(states) == 2 and {s["status"] for s in states} == {"healthy"}, states
        replica = states[0]["replica_id"]
        logs = c.get("/api/v1/models/dbl/logs", params={"replica": replica})
        assert logs.status_code == 200 and "serving in Ray actor" in logs.text, logs.text
        cluster = _ok(c.get("/api/v1/cluster"))
        assert len(cluster["nodes"]) == 2 and all(n["alive"] for n in cluster["nodes"])
        placed = [p for n in cluster["nodes"] for p in n["placed"] if p["kind"] == "replica"]
        assert len(placed) == 2 and cluster["waiting"] == [], cluster

        # roll back to the first build
        back = _ok(c.post("/api/v1/models/dbl/rollback", json={}))
        assert back["build"]["crn"] == first["build"]["crn"]
        answer = _ok(c.post("/api/v1/models/dbl/predict", json={"x": 2}))
        assert answer["response"]["double"] == 4

        # stop (503), delete (404), and no Serve application is left
        assert _ok(c.post("/api/v1/models/dbl/stop"))["state"] == "stopped"
        assert c.post("/api/v1/models/dbl/predict", json={"x": 1}).status_code == 503
        assert c.delete("/api/v1/models/dbl").status_code == 204
        assert c.post("/api/v1/models/dbl/predict", json={"x": 1}).status_code == 404
        assert _ok(c.get("/api/v1/cluster"))["waiting"] == []


def test_a_job_runs_as_a_ray_job_and_tracks_a_metric(server: ServerProcess, tmp_path: Path) -> None:
    project = tmp_path / "job"
    project.mkdir()
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    with httpx.Client(base_url=server.base, headers=server.auth, timeout=120) as c:
        body = {"name": "train", "project": str(project), "script": "train.py", "manual": True}
        _ok(c.post("/api/v1/jobs", json=body), 201)
        run = _ok(c.post("/api/v1/jobs/train/run"), 202)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            shown = _ok(c.get(f"/api/v1/runs/{run['uuid']}"))
            if shown["state"] in ("succeeded", "failed", "cancelled", "timed_out"):
                break
            time.sleep(0.5)
        log = c.get(f"/api/v1/runs/{run['uuid']}/logs").text
        assert shown["state"] == "succeeded" and shown["exit_code"] == 0, (shown, log)
        assert {m["key"]: m["value"] for m in shown["metrics"]} == {"loss": 0.25}
        assert "trained on ray" in log and "on ray" in log
