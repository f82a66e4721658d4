"""``/api/v1/experiments`` and ``POST /api/v1/runs/{run_id}/files``: on the real app in-process
(real SQLite, the real scheduler and runtime: runs are real processes) every route, bad input
that records nothing, experiments hidden from the jobs API; and one real server process running
an experiment from an upload that tracks metrics and a file through the server (slow)."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.cli.uploading import upload_folder
from modelyard.client import Client

from .conftest import Api, ServerProcess

SLEEPER = """
import sys, time
print("experiment", sys.argv[1:], flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
print("done", flush=True)
"""

TRAIN = """
import sys
from pathlib import Path
import numpy as np
import modelyard

rate = float(sys.argv[1])
for epoch in range(3):
    modelyard.track_metric("loss", np.float64(1.0 / (epoch + 1) * rate))
modelyard.track_metrics({"accuracy": np.float32(0.5), "epochs": np.int64(3)})
Path("model.bin").write_bytes(bytes(range(256)) * 4)
modelyard.track_file("model.bin")
print("trained", flush=True)
"""


@pytest.fixture
def experiments_project(tmp_path: Path) -> Path:
    root = tmp_path / "iris"
    root.mkdir()
    (root / "sleeper.py").write_text(textwrap.dedent(SLEEPER))
    (root / "train.py").write_text(textwrap.dedent(TRAIN))
    return root


async def _finished(api: Api, uuid: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await api.client.get(f"/api/v1/experiments/{uuid}", headers=api.auth())
        body: dict[str, Any] = answer.json()
        if body["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


def test_start_show_list_logs_files_and_compare(with_api: Any, experiments_project: Path) -> None:
    async def scenario(api: Api) -> None:
        post = {"script": "sleeper.py", "args": ["0"], "project": str(experiments_project)}
        answer = await api.client.post(
            "/api/v1/experiments", json={**post, "label": "first", "cpus": 1}, headers=api.auth()
        )
        assert answer.status_code == 201, answer.text
        first = answer.json()
        assert first["state"] in ("queued", "running") and first["name"] == "first"
        assert first["script"] == "sleeper.py" and first["args"] == ["0"]
        assert first["resources"] == {"cpus": 1.0, "memory": None, "gpus": 0, "accelerator": None}
        assert first["project"] == "admin/default" and first["job"].startswith("experiment-")
        done = await _finished(api, first["uuid"])
        assert done["state"] == "succeeded" and done["exitCode"] == 0
        assert len(done["codeDigest"]) == 64 and done["durationMs"] is not None
        registry = api.services.registry
        registry.add_run_metrics(done["id"], {"loss": 0.5})  # as a run's key would
        registry.add_run_metrics(done["id"], {"loss": 0.25})
        second = (
            await api.client.post("/api/v1/experiments", json=post, headers=api.auth())
        ).json()
        await _finished(api, second["uuid"])

        listed = await api.client.get("/api/v1/experiments", headers=api.auth())
        assert [e["uuid"] for e in listed.json()["experiments"]] == [second["uuid"], first["uuid"]]
        assert listed.json()["experiments"][1]["metrics"] == {"loss": 0.25}
        one = await api.client.get("/api/v1/experiments?limit=1", headers=api.auth())
        assert len(one.json()["experiments"]) == 1
        shown = await api.client.get(f"/api/v1/experiments/{first['uuid'][:8]}", headers=api.auth())
        history = shown.json()["metricHistory"]["loss"]
        assert [value for _, value in history] == [0.5, 0.25]
        logs = await api.client.get(
            f"/api/v1/experiments/{first['uuid']}/logs?tail=5", headers=api.auth()
        )
        assert logs.status_code == 200 and "experiment ['0']" in logs.text
        compared = await api.client.get(
            f"/api/v1/experiments/compare?runs={first['uuid']},{second['uuid'][:8]}",
            headers=api.auth(),
        )
        assert compared.status_code == 200, compared.text
        assert [r["uuid"] for r in compared.json()["runs"]] == [first["uuid"], second["uuid"]]
        assert compared.json()["metrics"] == ["loss"]

        registry.experiments.keep_file(done["id"], "out/model.pkl", b"\x80pickled")
        files = await api.client.get(
            f"/api/v1/experiments/{first['uuid']}/files", headers=api.auth()
        )
        assert [(f["path"], f["state"], f["size"]) for f in files.json()["files"]] == [
            ("out/model.pkl", "kept", 8)
        ]
        data = await api.client.get(
            f"/api/v1/experiments/{first['uuid']}/files/out/model.pkl", headers=api.auth()
        )
        assert data.content == b"\x80pickled"
        assert data.headers["content-type"] == "application/octet-stream"
        assert data.headers["content-disposition"] == (
            "attachment; filename=\"model.pkl\"; filename*=UTF-8''model.pkl"
        )
        registry.experiments.keep_file(done["id"], "modèle v2.onnx", b"onnx")
        accented = await api.client.get(
            f"/api/v1/experiments/{first['uuid']}/files/modèle v2.onnx", headers=api.auth()
        )
        assert accented.content == b"onnx"  # a header is latin-1: the exact name goes in filename*
        assert accented.headers["content-disposition"] == (
            "attachment; filename=\"mod_le v2.onnx\"; filename*=UTF-8''mod%C3%A8le%20v2.onnx"
        )
        missing = await api.client.get(
            f"/api/v1/experiments/{first['uuid']}/files/nope.bin", headers=api.auth()
        )
        assert missing.status_code == 404 and "out/model.pkl" in missing.text

        # Hidden from the jobs API: not listed, not reachable by name.
        jobs = await api.client.get("/api/v1/jobs", headers=api.auth())
        assert not [j for j in jobs.json()["jobs"] if j["name"].startswith("experiment-")]
        by_name = await api.client.get(f"/api/v1/jobs/{first['job']}", headers=api.auth())
        assert by_name.status_code == 404
        rerun = await api.client.post(f"/api/v1/jobs/{first['job']}/run", headers=api.auth())
        assert rerun.status_code == 404

    with_api(scenario)


def test_cancel_and_bad_input_that_records_nothing(
    with_api: Any, experiments_project: Path
) -> None:
    async def scenario(api: Api) -> None:
        registry = api.services.registry
        for body, status, text in (
            ({"script": "nope.py", "project": str(experiments_project)}, 400, "nope.py"),
            ({"script": "sleeper.py"}, 400, "give exactly one"),
            ({"script": "sleeper.py", "project": "/x", "upload": "u"}, 400, "give exactly one"),
            ({"script": "sleeper.py", "upload": "no-such-upload"}, 404, "no-such-upload"),
            ({"script": "s.py", "project": str(experiments_project), "gpus": 99}, 400, "gpus=99"),
            (
                {"script": "sleeper.py", "project": str(experiments_project), "gpus": 1},
                400,
                "asks for 1 GPU but this machine has 0 such",  # no GPU here
            ),
            ({"script": "s.py", "project": str(experiments_project), "bogus": 1}, 400, "bogus"),
        ):
            answer = await api.client.post("/api/v1/experiments", json=body, headers=api.auth())
            assert answer.status_code == status, (body, answer.text)
            assert text in answer.text, answer.text
        assert registry.experiments.list() == []

        post = {"script": "sleeper.py", "args": ["60"], "project": str(experiments_project)}
        started = (
            await api.client.post("/api/v1/experiments", json=post, headers=api.auth())
        ).json()
        cancelled = await api.client.post(
            f"/api/v1/experiments/{started['uuid']}/cancel", headers=api.auth()
        )
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        deleted = await api.client.delete(
            f"/api/v1/experiments/{started['uuid']}", headers=api.auth()
        )
        assert deleted.json() == {"deleted": started["id"]}
        assert registry.experiments.list() == []

        # A job's run is not an experiment; an unknown run is unknown.
        job = await api.client.post(
            "/api/v1/jobs",
            json={"name": "nightly", "project": str(experiments_project), "script": "sleeper.py"}
            | {"manual": True},
            headers=api.auth(),
        )
        assert job.status_code == 201, job.text
        run = (await api.client.post("/api/v1/jobs/nightly/run", headers=api.auth())).json()
        uuid = run["id"].rsplit("/", 1)[-1]
        not_one = await api.client.get(f"/api/v1/experiments/{uuid}", headers=api.auth())
        assert not_one.status_code == 404 and "not an experiment run" in not_one.text
        tracked = await api.client.post(
            f"/api/v1/runs/{uuid}/files", json={"path": "a.txt"}, headers=api.auth()
        )
        assert tracked.status_code == 404 and "not an experiment run" in tracked.text
        unknown = await api.client.get(
            "/api/v1/experiments/00000000-0000-4000-8000-000000000000", headers=api.auth()
        )
        assert unknown.status_code == 404

    with_api(scenario)


@pytest.mark.slow
def test_a_real_server_runs_an_uploaded_experiment_that_tracks_metrics_and_a_file(
    server_process: Callable[[], ServerProcess], experiments_project: Path
) -> None:
    server = server_process()
    client = Client(server.url, server.admin)
    upload = upload_folder(client, experiments_project, None)
    headers = {"Authorization": f"Bearer {server.admin}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        answer = http.post(
            "/api/v1/experiments",
            json={"script": "train.py", "args": ["2"], "upload": upload.id, "label": "rate 2"},
        )
        assert answer.status_code == 201, answer.text
        uuid = answer.json()["uuid"]
        deadline = time.monotonic() + 120
        while (shown := http.get(f"/api/v1/experiments/{uuid}").json())["state"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, shown
            time.sleep(0.1)
        logs = http.get(f"/api/v1/experiments/{uuid}/logs").text
        assert shown["state"] == "succeeded", logs
        assert shown["metrics"] == {"loss": 2.0 / 3, "accuracy": 0.5, "epochs": 3}
        assert [v for _, v in shown["metricHistory"]["loss"]] == [2.0, 1.0, 2.0 / 3]
        assert [(f["path"], f["state"], f["size"]) for f in shown["files"]] == [
            ("model.bin", "kept", 1024)
        ]
        data = http.get(f"/api/v1/experiments/{uuid}/files/model.bin").content
        assert data == bytes(range(256)) * 4
        assert "kept file model.bin (1024 bytes" in logs and "trained" in logs
