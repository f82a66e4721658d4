"""The server on PostgreSQL, loopback detection, bodies that are not JSON (never unpickled), and
following a replica's log until it stops."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path
from typing import Any

import pytest

from modelyard.server.run import is_loopback

from .conftest import Api


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.4", False), ("example.org", False)],
)  # fmt: skip
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.postgres
def test_the_api_on_postgresql(with_api: Any, postgres_schema_url: str) -> None:
    deployment = "crn:modelyard:deployment/33333333-3333-4333-8333-333333333333"
    record = {
        "predictionUuid": "p-1",
        "modelCrn": "",  # model m's, once created
        "modelBuildCrn": "crn:modelyard:build/b",
        "modelDeploymentCrn": deployment,
        "startTimeStampMs": 1_767_225_600_010,  # the API takes 2000-01-01 .. 2200-01-01
        "endTimeStampMs": 1_767_225_600_011,
        "metrics": {"score": 0.5},
    }

    async def scenario(api: Api) -> None:
        assert api.services.store.info().backend == "postgres"
        c, h = api.client, api.auth()
        model, _ = api.services.registry.create_model("m")
        record["modelCrn"] = model.crn
        operator = {"name": "bob", "project": "default", "project_role": "operator"}
        created = await c.post("/api/v1/keys", json=operator, headers=h)
        token = created.json()["token"]
        wrote = await c.post("/api/v1/metrics/predictions", json={"predictions": [record]},
                             headers=api.auth(token))  # fmt: skip
        assert wrote.status_code == 204, wrote.text
        delayed = {"predictionUuid": "p-1", "metrics": {"label": 1}, "source": "test"}
        assert (await c.post("/api/v1/metrics/delayed", json=delayed, headers=h)).status_code == 204
        read = await c.get("/api/v1/metrics", params={"modelDeploymentCrn": deployment},
                           headers=api.auth(token))  # fmt: skip
        assert read.json()["metrics"][0]["metrics"] == {"score": 0.5, "label": 1}
        scale = await c.post(
            "/api/v1/models/m/scale", json={"replicas": 1}, headers=api.auth(token)
        )
        assert scale.status_code == 403  # an operator writes metrics but changes nothing

    with_api(scenario, database_url=postgres_schema_url)


def test_bodies_are_json_only(with_api: Any) -> None:
    class Boom:
        def __reduce__(self) -> Any:
            return (print, ("unpickled!",))

    payload = pickle.dumps({"x": Boom()})

    async def scenario(api: Api) -> None:
        _, access_key = api.services.registry.create_model("m")
        for path in (f"/model?accessKey={access_key}", "/api/v1/metrics/predictions"):
            answer = await api.client.post(
                path,
                content=payload,
                headers={**api.auth(), "Content-Type": "application/octet-stream"},
            )
            assert answer.status_code in (400, 422), answer.text

    with_api(scenario)


@pytest.mark.slow
def test_follow_a_replica_log_until_it_stops(
    with_api: Any, project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        deployed = await c.post(
            "/api/v1/models/churn/deploy", json={"project": str(project)}, headers=h
        )
        assert deployed.status_code == 201, deployed.text

        async def follow() -> str:
            async with c.stream("GET", "/api/v1/models/churn/logs",
                                params={"follow": "true"}, headers=h) as answer:  # fmt: skip
                assert answer.status_code == 200
                return "".join([chunk async for chunk in answer.aiter_text()])

        following = asyncio.create_task(follow())
        await asyncio.sleep(1.0)
        assert not following.done()  # it waits for more lines
        assert (await c.post("/api/v1/models/churn/stop", headers=h)).status_code == 200
        text = await asyncio.wait_for(following, 30)
        assert "serving predict.py:predict" in text
        assert "stopped" in text  # lines written after the follow began

    with_api(scenario)
