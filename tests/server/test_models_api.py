"""Models over the REST API with real builds and real replica processes: deploy, calls through
``/model`` and the native routes, records, body limits, overload, failed builds, path checks,
access-key rotation, scale, stop/start, rollback, delete."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from .conftest import Api

pytestmark = pytest.mark.slow


async def _deploy(api: Api, name: str, project: Path, **extra: Any) -> dict[str, Any]:
    body = {"project": str(project), "example": {"x": 1}, **extra}
    answer = await api.client.post(f"/api/v1/models/{name}/deploy", json=body, headers=api.auth())
    assert answer.status_code == 201, answer.text
    outcome: dict[str, Any] = answer.json()
    return outcome


def test_deploy_call_record_and_operate(with_api: Any, project: Path) -> None:
    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        outcome = await _deploy(api, "churn", project)
        assert outcome["ok"] is True
        access_key = outcome["access_key"]
        assert access_key.startswith("mya_")
        assert outcome["model"]["crn"].startswith("crn:modelyard:model/")
        assert outcome["build"]["crn"].startswith("crn:modelyard:build/")
        deployment = outcome["deployment"]["crn"]
        assert outcome["deployment"]["state"] == "active"

        # the reference call, body key and query key
        answer = await c.post("/model", json={"accessKey": access_key, "request": {"x": 3}},
                              headers=h)  # fmt: skip
        assert answer.status_code == 200, answer.text
        envelope = answer.json()
        assert envelope["success"] is True and envelope["response"]["prediction"] == {"double": 6}
        assert envelope["ReplicaID"] and envelope["uuid"]
        answer = await c.post(f"/model?accessKey={access_key}", json={"request": {"x": 4}},
                              headers=h)  # fmt: skip
        assert answer.json()["response"]["prediction"] == {"double": 8}
        # the bearer key is required by default
        answer = await c.post("/model", json={"accessKey": access_key, "request": {"x": 3}})
        assert answer.status_code == 401 and answer.json()["success"] is False

        # native routes
        answer = await c.post("/api/v1/models/churn/predict", json={"x": 5}, headers=h)
        assert answer.json()["response"]["prediction"] == {"double": 10}
        failed = await c.post("/api/v1/models/churn/predict", json={"x": -1}, headers=h)
        assert failed.status_code == 500
        assert failed.json()["error"]["code"] == "model_error"
        assert "negative" in failed.json()["error"]["message"]
        batch = await c.post("/api/v1/models/churn/predict_batch", json=[{"x": 1}, {"x": 2}],
                             headers=h)  # fmt: skip
        assert [item["response"]["prediction"] for item in batch.json()["responses"]] == [
            {"double": 2}, {"double": 4}
        ]  # fmt: skip
        not_json = await c.post("/api/v1/models/churn/predict", content=b"{x", headers=h)
        assert not_json.status_code == 400 and not_json.json()["success"] is False

        # the records are in the store under the deployment, read back through the API
        api.services.writer.flush()
        read = await c.get("/api/v1/metrics", params={"modelDeploymentCrn": deployment},
                           headers=h)  # fmt: skip
        records = [r for r in read.json()["metrics"] if r["kind"] == "prediction"]
        assert envelope["uuid"] in {r["predictionUuid"] for r in records}
        assert {r["metrics"].get("x") for r in records} >= {3, 4, 5}
        assert all(r["modelBuildCrn"] == outcome["build"]["crn"] for r in records)

        # /metrics has the gateway's counters and the replica's gauges
        text = (await c.get("/metrics", headers=h)).text
        assert 'modelyard_replica_up{deployment="' in text
        assert "modelyard_replica_rss_bytes" in text

        # status, builds and logs
        status = (await c.get("/api/v1/models/churn", headers=h)).json()
        assert status["active"]["crn"] == deployment
        replica = status["replicas"][0]["state"]["replica_id"]
        builds = (await c.get("/api/v1/models/churn/builds", headers=h)).json()["builds"]
        assert [b["crn"] for b in builds] == [outcome["build"]["crn"]]
        logs = await c.get("/api/v1/models/churn/logs", params={"replica": replica}, headers=h)
        assert logs.status_code == 200 and "serving predict.py:predict" in logs.text
        every = await c.get("/api/v1/models/churn/logs", headers=h)
        assert f"[{replica}]" in every.text

        # rotate the access key: the old one stops working at once
        rotated = (await c.post("/api/v1/models/churn/rotate-key", headers=h)).json()
        old = await c.post("/model", json={"accessKey": access_key, "request": {"x": 1}},
                           headers=h)  # fmt: skip
        assert old.status_code == 401
        new = await c.post("/model", json={"accessKey": rotated["access_key"],
                                           "request": {"x": 1}}, headers=h)  # fmt: skip
        assert new.status_code == 200

        # scale, stop (503), start, rollback, delete
        scaled = await c.post("/api/v1/models/churn/scale", json={"replicas": 2}, headers=h)
        assert scaled.json()["replicas"] == 2
        status = (await c.get("/api/v1/models/churn", headers=h)).json()
        assert len(status["replicas"]) == 2
        stopped = await c.post("/api/v1/models/churn/stop", headers=h)
        assert stopped.json()["state"] == "stopped"
        answer = await c.post("/api/v1/models/churn/predict", json={"x": 1}, headers=h)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "unavailable"
        started = await c.post("/api/v1/models/churn/start", headers=h)
        assert started.json()["ok"] is True
        answer = await c.post("/api/v1/models/churn/predict", json={"x": 1}, headers=h)
        assert answer.status_code == 200

        (project / "predict.py").write_text(
            (project / "predict.py").read_text().replace("* 2}", "* 3}")
        )
        second = await _deploy(api, "churn", project)
        assert second["access_key"] is None  # an existing model keeps its key
        answer = await c.post("/api/v1/models/churn/predict", json={"x": 2}, headers=h)
        assert answer.json()["response"]["prediction"] == {"double": 6}
        back = await c.post("/api/v1/models/churn/rollback", json={}, headers=h)
        assert back.status_code == 200, back.text
        assert back.json()["build"]["crn"] == outcome["build"]["crn"]
        answer = await c.post("/api/v1/models/churn/predict", json={"x": 2}, headers=h)
        assert answer.json()["response"]["prediction"] == {"double": 4}

        gone = await c.delete("/api/v1/models/churn", headers=h)
        assert gone.status_code == 204
        assert (await c.get("/api/v1/models/churn", headers=h)).status_code == 404
        answer = await c.post("/api/v1/models/churn/predict", json={"x": 1}, headers=h)
        assert answer.status_code == 404

    with_api(scenario)


def test_limits_overload_failed_build_and_anonymous_models(with_api: Any, project: Path) -> None:
    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        outcome = await _deploy(
            api,
            "slow",
            project,
            settings={"concurrency": 1, "max_queue": 0, "max_body_bytes": 1000,
                      "auth_required": False},
        )  # fmt: skip
        access_key = outcome["access_key"]

        # no API key needed for this model
        answer = await c.post("/model", json={"accessKey": access_key, "request": {"x": 1}})
        assert answer.status_code == 200, answer.text

        # 413: declared too large (refused before reading), and streamed without a length
        big = b'{"x": 1, "pad": "' + b"a" * 2000 + b'"}'
        answer = await c.post("/api/v1/models/slow/predict", content=big)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large"

        async def chunks() -> Any:
            for _ in range(100):
                yield b"a" * 100

        answer = await c.post("/api/v1/models/slow/predict", content=chunks())
        assert answer.status_code == 413
        assert "more than 1000" in answer.json()["error"]["message"]
        answer = await c.post("/model", json={"accessKey": access_key,
                                              "request": {"x": 1, "pad": "a" * 2000}})  # fmt: skip
        assert answer.status_code == 413

        # 429 with Retry-After when the one slot is busy and no queue is allowed
        busy = asyncio.create_task(
            c.post("/api/v1/models/slow/predict", json={"x": 1, "sleep": 1.5})
        )
        await asyncio.sleep(0.5)
        answer = await c.post("/api/v1/models/slow/predict", json={"x": 2})
        assert answer.status_code == 429, answer.text
        assert int(answer.headers["retry-after"]) >= 1
        assert (await busy).status_code == 200

        # a failed build: 422 deploy_failed with the log tail; the old deployment still serves
        (project / "predict.py").write_text("raise RuntimeError('broken on import')\n")
        failed = await c.post("/api/v1/models/slow/deploy", json={"project": str(project)},
                              headers=h)  # fmt: skip
        assert failed.status_code == 422
        error = failed.json()["error"]
        assert error["code"] == "deploy_failed"
        assert "broken on import" in error["message"]
        assert error["details"]["ok"] is False and error["details"]["deployment"] is None
        answer = await c.post("/api/v1/models/slow/predict", json={"x": 2})
        assert answer.json()["response"]["prediction"] == {"double": 4}

    with_api(scenario)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"project": "relative/project"}, "not absolute"),
        ({"project": "/no/such/folder/anywhere"}, "does not exist"),
        ({"project": "{project}/predict.py"}, "is not a folder"),
        ({"project": "{project}", "file": "../../etc/passwd.py"}, "outside the project"),
        ({"project": "{project}", "file": "/etc/passwd.py"}, "outside the project"),
        ({"project": "{project}", "requirements": "/etc/hosts"}, "outside the project"),
        ({"project": "{project}", "requirements": "../requirements.txt"}, "outside the project"),
        ({"project": "{project}", "function": "os.system"}, "not a Python identifier"),
    ],
)
def test_project_paths_cannot_leave_the_project(
    with_api: Any, project: Path, body: dict[str, str], named: str
) -> None:
    filled = {k: v.replace("{project}", str(project)) for k, v in body.items()}

    async def scenario(api: Api) -> None:
        answer = await api.client.post("/api/v1/models/m/deploy", json=filled, headers=api.auth())
        assert answer.status_code == 400, answer.text
        assert named in answer.json()["error"]["message"]
        assert api.services.registry.list_models() == []  # refused before anything was made

    with_api(scenario)


@pytest.mark.parametrize("replica", ["../../etc/passwd", "..", "a/b", "x\\y"])
def test_log_routes_refuse_traversal(with_api: Any, replica: str) -> None:
    async def scenario(api: Api) -> None:
        api.services.registry.create_model("m")
        answer = await api.client.get(
            "/api/v1/models/m/logs", params={"replica": replica}, headers=api.auth()
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_input"

    with_api(scenario)
