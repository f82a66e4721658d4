"""Who may read and write metrics (``/api/v1/metrics*``, ``/api/v1/runs/{id}/metrics``), on the
real app in-process: viewers read, operators write, in the project of the model each identifier
leads to; another project's objects and unknown ones get one 404 with one message; run keys
reach their own model (a deployment's) or their job's project (a job run's)."""

from __future__ import annotations

import time
from typing import Any

from modelyard.specs.job import JobSpec
from modelyard.store.base import Identity, Prediction

from ._world import World, make_world
from .conftest import Api


def _now() -> int:
    return time.time_ns() // 1_000_000


def _prediction(ident: Identity, uuid: str) -> dict[str, Any]:
    now = _now()
    return {
        "predictionUuid": uuid,
        "modelCrn": ident.model_crn,
        "modelBuildCrn": ident.build_crn,
        "modelDeploymentCrn": ident.deployment_crn,
        "startTimeStampMs": now - 5,
        "endTimeStampMs": now,
        "metrics": {"score": 0.5},
    }


def _seed(world: World) -> None:
    """One prediction in each project, written straight to the store."""
    now = _now()
    for ident, uuid in ((world.mine, "p-mine"), (world.theirs, "p-theirs")):
        world.api.services.store.write_predictions(
            [Prediction(uuid, ident, now - 5, now, {"score": 1.0})]
        )


async def _read(world: World, who: str, **query: str) -> Any:
    return await world.api.client.get("/api/v1/metrics", params=query, headers=world.auth(who))


def test_reads_need_a_role_in_the_models_project(with_api: Any, database: dict[str, Any]) -> None:
    async def scenario(api: Api) -> None:
        world = make_world(api)
        _seed(world)
        mine, theirs = world.mine, world.theirs
        for who in ("vic", "otto", "cora", "alice", "admin"):
            for query in (
                {"modelCrn": mine.model_crn},
                {"modelDeploymentCrn": mine.deployment_crn},
                {"modelCrn": mine.model_crn, "modelDeploymentCrn": mine.deployment_crn},
            ):
                answer = await _read(world, who, **query)
                assert answer.status_code == 200, (who, query, answer.text)
                assert [m["predictionUuid"] for m in answer.json()["metrics"]] == ["p-mine"]
        # bob owns the other project: he reads his, and churn's is unknown to him.
        own = await _read(world, "bob", modelCrn=theirs.model_crn)
        assert own.status_code == 200 and len(own.json()["metrics"]) == 1
        hidden = await _read(world, "bob", modelDeploymentCrn=mine.deployment_crn)
        unknown = await _read(world, "bob", modelDeploymentCrn="crn:modelyard:deployment/nope")
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "crn:modelyard:deployment/nope", mine.deployment_crn
        )
        assert "is not known, or not in a project you can see" in hidden.text
        hidden_model = await _read(world, "bob", modelCrn=mine.model_crn)
        assert hidden_model.status_code == 404
        # Every identifier counts: a visible model with a hidden deployment is refused.
        mixed = await _read(
            world, "vic", modelCrn=mine.model_crn, modelDeploymentCrn=theirs.deployment_crn
        )
        assert mixed.status_code == 404
        dist = await api.client.get(
            "/api/v1/metrics/distribution",
            params={"key": "score", "modelCrn": mine.model_crn},
            headers=world.auth("bob"),
        )
        assert dist.status_code == 404
        dist = await api.client.get(
            "/api/v1/metrics/distribution",
            params={"key": "score", "modelCrn": mine.model_crn},
            headers=world.auth("vic"),
        )
        assert dist.status_code == 200 and dist.json()["count"] == 1

    with_api(scenario, **database)


def test_writes_need_operator_and_name_the_role_when_too_low(
    with_api: Any, database: dict[str, Any]
) -> None:
    async def scenario(api: Api) -> None:
        world = make_world(api)
        _seed(world)
        c = api.client
        mine, theirs = world.mine, world.theirs
        body = {"predictions": [_prediction(mine, "w-1")]}
        refused = await c.post("/api/v1/metrics/predictions", json=body, headers=world.auth("vic"))
        assert refused.status_code == 403, refused.text
        message = refused.json()["error"]["message"]
        assert "user 'vic' is viewer in project 'alice/churn'" in message
        assert "needs operator or higher" in message
        for who, uuid in (("otto", "w-2"), ("cora", "w-3"), ("admin", "w-4")):
            body = {"predictions": [_prediction(mine, uuid)]}
            ok = await c.post("/api/v1/metrics/predictions", json=body, headers=world.auth(who))
            assert ok.status_code == 204, (who, ok.text)
        # A batch reaching into another project writes nothing at all.
        both = {"predictions": [_prediction(mine, "w-5"), _prediction(theirs, "w-6")]}
        refused = await c.post("/api/v1/metrics/predictions", json=both, headers=world.auth("otto"))
        assert refused.status_code == 404
        # Own model, but another project's deployment: no store Conflict naming its model.
        sneaky = _prediction(mine, "w-7")
        sneaky["modelDeploymentCrn"] = theirs.deployment_crn
        refused = await c.post(
            "/api/v1/metrics/predictions",
            json={"predictions": [sneaky]},
            headers=world.auth("otto"),
        )
        assert refused.status_code == 404 and theirs.model_crn not in refused.text
        stored = api.services.store
        api.services.writer.flush()
        for uuid in ("w-1", "w-5", "w-6", "w-7"):
            assert not _exists(stored, uuid), uuid
        for uuid in ("w-2", "w-3", "w-4"):
            assert _exists(stored, uuid), uuid

        # Delayed metrics by uuid: the prediction's model decides; unknown and hidden alike.
        delayed = {"predictionUuid": "p-mine", "metrics": {"label": 1}}
        assert (
            await c.post("/api/v1/metrics/delayed", json=delayed, headers=world.auth("otto"))
        ).status_code == 204
        assert (
            await c.post("/api/v1/metrics/delayed", json=delayed, headers=world.auth("vic"))
        ).status_code == 403
        hidden = await c.post("/api/v1/metrics/delayed", json=delayed, headers=world.auth("bob"))
        unknown = await c.post(
            "/api/v1/metrics/delayed",
            json={"predictionUuid": "no-such", "metrics": {"label": 1}},
            headers=world.auth("bob"),
        )
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "no-such", "p-mine"
        )
        # Aggregates by deployment.
        now = _now()
        agg = {
            "modelDeploymentCrn": mine.deployment_crn,
            "startTimeStampMs": now - 1000,
            "endTimeStampMs": now,
            "metrics": {"roc_auc": 0.8},
        }
        for who, status in (("otto", 204), ("vic", 403), ("bob", 404)):
            answer = await c.post("/api/v1/metrics/aggregate", json=agg, headers=world.auth(who))
            assert answer.status_code == status, (who, answer.text)

    with_api(scenario, **database)


def _exists(store: Any, uuid: str) -> bool:
    from modelyard.errors import NotFound

    try:
        store.prediction_identity(uuid)
    except NotFound:
        return False
    return True


def test_run_keys_reach_their_own_model_or_their_jobs_project(
    with_api: Any, database: dict[str, Any], tmp_path: Any
) -> None:
    async def scenario(api: Api) -> None:
        world = make_world(api)
        _seed(world)
        registry = api.services.registry
        c = api.client
        mine, theirs = world.mine, world.theirs
        # A second model in churn, to tell a deployment's key from a project-wide one.
        other, _ = registry.create_model("churn-b", project_crn=world.churn.crn)
        sibling = Identity(
            other.crn, "crn:modelyard:build/b-churn-b", "crn:modelyard:deployment/d-churn-b"
        )
        api.services.store.register_identity(sibling)

        _, replica = registry.create_api_key("replica", role="run", scope=mine.model_crn)
        auth = {"Authorization": f"Bearer {replica}"}
        own = await c.get("/api/v1/metrics", params={"modelCrn": mine.model_crn}, headers=auth)
        assert own.status_code == 200 and len(own.json()["metrics"]) == 1
        body = {"predictions": [_prediction(mine, "r-1")]}
        assert (
            await c.post("/api/v1/metrics/predictions", json=body, headers=auth)
        ).status_code == 204
        for crn in (sibling.model_crn, theirs.model_crn):
            answer = await c.get("/api/v1/metrics", params={"modelCrn": crn}, headers=auth)
            assert answer.status_code == 404, answer.text
        # Not a metrics route: refused whatever it names.
        refused = await c.get("/api/v1/overview", headers=auth)
        assert refused.status_code == 403 and "run key" in refused.json()["error"]["message"]

        (tmp_path / "job.py").write_text("print('hi')\n")
        spec = JobSpec.parse(
            {"name": "nightly", "project": str(tmp_path), "script": "job.py", "manual": True}
        )
        job = registry.create_job(spec, project_crn=world.churn.crn)
        run = registry.create_run(job.id, 0, 1, "manual")
        second = registry.create_run(job.id, 1, 1, "manual")
        _, job_key = registry.create_api_key("a run", role="run", scope=run.id)
        auth = {"Authorization": f"Bearer {job_key}"}
        for crn in (mine.model_crn, sibling.model_crn):
            answer = await c.get("/api/v1/metrics", params={"modelCrn": crn}, headers=auth)
            assert answer.status_code == 200, answer.text
        answer = await c.get("/api/v1/metrics", params={"modelCrn": theirs.model_crn}, headers=auth)
        assert answer.status_code == 404
        # Run metrics: its own run only; any other run is unknown to it.
        uuid = run.id.rsplit("/", 1)[-1]
        other_uuid = second.id.rsplit("/", 1)[-1]
        metrics = {"metrics": {"n": 1}}
        posted = await c.post(f"/api/v1/runs/{uuid}/metrics", json=metrics, headers=auth)
        assert posted.status_code == 204, posted.text
        posted = await c.post(f"/api/v1/runs/{other_uuid}/metrics", json=metrics, headers=auth)
        assert posted.status_code == 404
        # People: operators of the job's project track a run's metrics, viewers may not.
        for who, status in (("otto", 204), ("vic", 403), ("bob", 404)):
            answer = await c.post(
                f"/api/v1/runs/{other_uuid}/metrics", json=metrics, headers=world.auth(who)
            )
            assert answer.status_code == status, (who, answer.text)
        assert [m.key for m in registry.run_metrics(run.id)] == ["n"]
        assert [m.key for m in registry.run_metrics(second.id)] == ["n"]

    with_api(scenario, **database)
