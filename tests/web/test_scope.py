"""A key limited to one model (``scope``), over the real app in-process: each test replays one
probe of issue 10 (rows 1, 2, 3, 4, 12 and two hardening items of row 15) as it was reported,
then checks the rule that fixes it, as ``modelyard.web.access`` now decides it: a key belongs to
a user and acts with the user's project roles, and a scope narrows that to one model, where a
model it does not reach answers as an unknown one would (404) and what belongs to no single model
(jobs, runs, keys, the server's metrics) is refused (403).

"alpha" is model A, "beta" model B, both in the ``default`` project, which user ``admin`` owns;
the keys under test are ``user`` keys of ``admin`` limited to beta."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.ids import new_crn, new_prediction_uuid
from modelyard.registry import Model, Registry
from modelyard.specs.job import JobSpec
from modelyard.store.sqlaccess import sql, transaction

from .conftest import Api

DB_PASSWORD = "s3cret-db-password"


def _models(api: Api) -> tuple[Model, Model]:
    registry = api.services.registry
    alpha, _ = registry.create_model("alpha")
    beta, _ = registry.create_model("beta")
    return alpha, beta


def _key(api: Api, name: str, user: str = "admin", **narrow: str) -> str:
    """A 'user' key of ``user`` (the server's admin by default), narrowed as asked."""
    return api.services.registry.create_api_key(name, user=user, **narrow)[1]


def _stored_as(api: Api, key_id: str, **columns: str) -> None:
    """Change a stored key row the way a database from before scope checks could hold it (the
    registry now refuses such keys at creation). Call it before the key is first used: the
    registry caches a key once it has authenticated it."""
    assignments = ", ".join(f"{name} = ?" for name in columns)
    store = api.services.store

    def change(cur: Any) -> None:
        cur.execute(
            sql(store, f"UPDATE api_keys SET {assignments} WHERE id = ?"),
            (*columns.values(), key_id),
        )

    transaction(store, change)


def _error(answer: httpx.Response, status: int | tuple[int, ...]) -> str:
    wanted = status if isinstance(status, tuple) else (status,)
    assert answer.status_code in wanted, (answer.request.url, answer.text)
    message: str = answer.json()["error"]["message"]
    return message


LIMITED = "limited to model"


# -- row 1: a scoped admin key escapes its scope ---------------------------------------------------


def test_row1_a_scoped_admin_key_is_refused_and_one_stored_earlier_stays_in_its_scope(
    with_api: Any, tmp_path: Path
) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        _, beta = _models(api)
        # the probe: create {"role": "admin", "scope": <CRN of model B>} ...
        made = await c.post(
            "/api/v1/keys", json={"role": "admin", "scope": beta.crn}, headers=api.auth()
        )
        message = _error(made, 400)
        assert f"scope={beta.crn!r} is refused for an admin key" in message
        keys = (await c.get("/api/v1/keys", headers=api.auth())).json()["keys"]
        assert [k["role"] for k in keys] == ["admin"]  # nothing was stored

        # ... and a scoped admin key a database may already hold (created before the check): it
        # is no server administrator, and reaches its own model only
        stored, scoped_admin = api.services.registry.create_api_key(
            "b-admin", user="admin", scope=beta.crn
        )
        _stored_as(api, stored.id, role="admin")
        project = tmp_path / "job-project"
        project.mkdir()
        (project / "job.py").write_text("print('hi')\n")
        job = {"name": "j", "project": str(project), "script": "job.py", "manual": True}
        for method, path, body, status in (
            ("POST", "/api/v1/keys", {"role": "admin"}, 403),  # an unscoped admin key before
            ("POST", "/api/v1/keys", {"scope": beta.crn}, 403),
            ("GET", "/api/v1/keys", None, 403),
            ("POST", "/api/v1/models/alpha/stop", None, 404),  # another model: 200 before
            ("POST", "/api/v1/jobs", job, 403),
            ("GET", "/metrics", None, 403),
            ("GET", "/api/v1/users", None, 403),
        ):
            answer = await c.request(method, path, json=body, headers=api.auth(scoped_admin))
            _error(answer, status)
        assert len((await c.get("/api/v1/keys", headers=api.auth())).json()["keys"]) == 2
        jobs = (await c.get("/api/v1/jobs", headers=api.auth())).json()["jobs"]
        assert "j" not in [j["name"] for j in jobs]
        # what its user may do on its own model it still may
        own = await c.get("/api/v1/models/beta", headers=api.auth(scoped_admin))
        assert own.status_code == 200, own.text
        rotated = await c.post("/api/v1/models/beta/rotate-key", headers=api.auth(scoped_admin))
        assert rotated.status_code == 200, rotated.text

    with_api(scenario)


# -- row 2: scope on reads ------------------------------------------------------------------------


def test_row2_a_scoped_user_key_reads_its_own_model_only(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        _models(api)
        registry = api.services.registry
        spec = JobSpec(name="hello", project="/srv/jobs", script="hello.py", manual=True)
        job = registry.create_job(spec)
        run = registry.create_run(job.id, 0, 1, "manual")
        scoped = api.auth(_key(api, "b-user", scope="beta"))

        listed = (await c.get("/api/v1/models", headers=scoped)).json()["models"]
        assert [m["name"] for m in listed] == ["beta"]  # alpha was listed before
        for path in (
            "/api/v1/models/alpha",
            "/api/v1/models/alpha/builds",
            "/api/v1/models/alpha/logs",
            "/api/v1/models/alpha/tech",
            "/api/v1/models/alpha/predictions",
        ):
            unknown = _error(await c.get(path.replace("alpha", "nosuch"), headers=scoped), 404)
            assert _error(await c.get(path, headers=scoped), 404) == unknown.replace(
                "nosuch", "alpha"
            ), path
        for path in (
            "/api/v1/models/beta",
            "/api/v1/models/beta/builds",
            "/api/v1/models/beta/logs",
        ):
            assert (await c.get(path, headers=scoped)).status_code == 200, path
        # jobs belong to no model: a scoped key sees none of them, nor their runs
        assert (await c.get("/api/v1/jobs", headers=scoped)).json()["jobs"] == []
        uuid = run.id.rsplit("/", 1)[-1]
        for path in (
            "/api/v1/jobs/hello",
            "/api/v1/jobs/hello/runs",
            f"/api/v1/runs/{uuid}",
            f"/api/v1/runs/{uuid}/logs",
        ):
            assert LIMITED in _error(await c.get(path, headers=scoped), 403), path
        # the same job read by an unscoped key of the same user: allowed
        wide = await c.get("/api/v1/jobs/hello", headers=api.auth(_key(api, "user")))
        assert wide.status_code == 200, wide.text
        # the server's Prometheus metrics cover every model
        assert (await c.get("/metrics", headers=scoped)).status_code == 403

    with_api(scenario)


# -- row 3: scope on writes -----------------------------------------------------------------------


async def _prediction(api: Api, model: Model) -> tuple[str, str]:
    """A stored prediction of ``model`` (written with the admin key); its uuid and deployment."""
    deployment = new_crn("deployment")
    uuid = new_prediction_uuid()
    record = {
        "predictionUuid": uuid,
        "modelCrn": model.crn,
        "modelBuildCrn": new_crn("build"),
        "modelDeploymentCrn": deployment,
        "startTimeStampMs": 1_700_000_000_000,
        "endTimeStampMs": 1_700_000_000_005,
        "metrics": {"score": 0.5},
    }
    answer = await api.client.post(
        "/api/v1/metrics/predictions", json={"predictions": [record]}, headers=api.auth()
    )
    assert answer.status_code == 204, answer.text
    return uuid, deployment


def test_row3_a_scoped_key_may_not_label_another_models_prediction(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        alpha, beta = _models(api)
        uuid_a, deployment_a = await _prediction(api, alpha)
        uuid_b, _ = await _prediction(api, beta)
        scoped = api.auth(_key(api, "b-user", scope=beta.crn))

        # the probe: a key scoped to B posts a label onto a prediction of A (204 and stored)
        label = {"predictionUuid": uuid_a, "metrics": {"churned": 1}}
        # refused as an unknown prediction would be (404), naming no model
        message = _error(await c.post("/api/v1/metrics/delayed", json=label, headers=scoped), 404)
        assert uuid_a in message and alpha.crn not in message
        assert api.services.store.delayed_history(uuid_a) == []
        own = {"predictionUuid": uuid_b, "metrics": {"churned": 0}}
        assert (
            await c.post("/api/v1/metrics/delayed", json=own, headers=scoped)
        ).status_code == 204
        assert [d.key for d in api.services.store.delayed_history(uuid_b)] == ["churned"]

        # its own model's records onto another model's deployment: refused, naming no model
        onto = {
            "predictionUuid": new_prediction_uuid(),
            "modelCrn": beta.crn,
            "modelBuildCrn": new_crn("build"),
            "modelDeploymentCrn": deployment_a,
            "startTimeStampMs": 1_700_000_000_000,
            "endTimeStampMs": 1_700_000_000_001,
        }
        answer = await c.post(
            "/api/v1/metrics/predictions", json={"predictions": [onto]}, headers=scoped
        )
        assert alpha.crn not in _error(answer, (403, 404))

        # every other route that writes a model's data
        run_uuid = new_crn("run").rsplit("/", 1)[-1]
        for path, body in (
            (
                "/api/v1/metrics/predictions",
                {
                    "predictions": [
                        {
                            "predictionUuid": new_prediction_uuid(),
                            "modelCrn": alpha.crn,
                            "modelBuildCrn": new_crn("build"),
                            "modelDeploymentCrn": deployment_a,
                            "startTimeStampMs": 1_700_000_000_000,
                            "endTimeStampMs": 1_700_000_000_001,
                        }
                    ]
                },
            ),
            (
                "/api/v1/metrics/aggregate",
                {
                    "modelDeploymentCrn": deployment_a,
                    "startTimeStampMs": 1_700_000_000_000,
                    "endTimeStampMs": 1_700_000_060_000,
                    "metrics": {"roc_auc": 0.5},
                },
            ),
            (
                "/api/v1/references",
                {"deployment": deployment_a, "name": "training", "columns": {"x": [1, 2]}},
            ),
            ("/api/v1/monitors/label-times", {"deployment": deployment_a, "key": "y", "uuids": []}),
            (f"/api/v1/runs/{run_uuid}/metrics", {"metrics": {"n": 1}}),
        ):
            message = _error(await c.post(path, json=body, headers=scoped), (403, 404))
            assert alpha.crn not in message or alpha.crn in str(body), path  # only what it named
        for path, body in (
            (
                "/api/v1/monitors/m/state",
                {"deployment": deployment_a, "labels_through_ms": 1_700_000_000_000},
            ),
            (
                "/api/v1/monitors/m/results",
                {
                    "deployment": deployment_a,
                    "source": "monitor:m",
                    "start_ms": 1_700_000_000_000,
                    "end_ms": 1_700_000_060_000,
                    "n": 0,
                    "metrics": {},
                },
            ),
        ):
            _error(await c.put(path, json=body, headers=scoped), (403, 404))
        read = await c.get(
            "/api/v1/metrics", params={"modelDeploymentCrn": deployment_a}, headers=api.auth()
        )
        assert [r["predictionUuid"] for r in read.json()["metrics"]] == [uuid_a]

    with_api(scenario)


# -- row 4: deployment environment values ---------------------------------------------------------

PREDICT = """
def predict(args):
    return {"double": args["x"] * 2}
"""


@pytest.mark.slow  # deploys a model (a replica process)
def test_row4_deployment_env_values_are_shown_to_who_may_change_the_project(
    with_api: Any, tmp_path: Path
) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        project = tmp_path / "alpha-project"
        project.mkdir()
        (project / "predict.py").write_text(textwrap.dedent(PREDICT))
        body = {"project": str(project), "example": {"x": 1}, "env": {"DB_PASSWORD": DB_PASSWORD}}
        deployed = await c.post("/api/v1/models/alpha/deploy", json=body, headers=api.auth())
        assert deployed.status_code == 201, deployed.text
        alpha = api.services.registry.get_model("alpha")
        registry: Registry = api.services.registry
        people = registry.people
        default = people.default_project().crn
        for name, role in (("vera", "viewer"), ("otto", "operator"), ("cora", "contributor")):
            people.create_user(name)
            people.set_collaborator(default, "user", name, role)
        masked = [
            _key(api, "v", user="vera"),
            _key(api, "o", user="otto"),
            _key(api, "narrowed", project_role="operator"),  # admin's key, narrowed
        ]
        shown = [api.admin, _key(api, "c", user="cora"), _key(api, "scoped", scope="alpha")]
        for token in masked + shown:
            listed = await c.get("/api/v1/models", headers=api.auth(token))
            status = (await c.get("/api/v1/models/alpha", headers=api.auth(token))).json()
            [row] = listed.json()["models"]
            env = {"DB_PASSWORD": "***"} if token in masked else {"DB_PASSWORD": DB_PASSWORD}
            assert row["active_deployment"]["env"] == env
            assert status["active"]["env"] == env
            assert [d["env"] for d in status["deployments"]] == [env]
            assert status["model"]["crn"] == alpha.crn
            if token in masked:
                assert DB_PASSWORD not in listed.text + str(status)
        stopped = await c.post("/api/v1/models/alpha/stop", headers=api.auth())
        assert stopped.status_code == 200, stopped.text

    with_api(scenario)


# -- row 12: the scope is validated at creation ---------------------------------------------------


def test_row12_a_key_scope_must_name_an_existing_model(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        _, beta = _models(api)
        unknown_model = new_crn("model")
        for body, words in (
            ({"scope": "../../"}, "scope='../../' is not an existing model"),
            ({"scope": unknown_model}, f"scope={unknown_model!r} is not an existing model"),
            ({"scope": "crn:modelyard:run/whatever"}, "is a job run's scope"),
            ({"role": "run", "scope": beta.crn}, "minted by the server"),
            ({"role": "admin", "scope": "beta"}, "refused for an admin key"),
        ):
            message = _error(await c.post("/api/v1/keys", json=body, headers=api.auth()), 400)
            assert words in message, (body, message)
            assert "accepted" in message
        keys = (await c.get("/api/v1/keys", headers=api.auth())).json()["keys"]
        assert len(keys) == 1  # nothing was stored

        # a model's name or CRN is accepted; the CRN is what is stored
        by_name = await c.post("/api/v1/keys", json={"scope": "beta"}, headers=api.auth())
        assert by_name.status_code == 201 and by_name.json()["key"]["scope"] == beta.crn
        by_crn = await c.post("/api/v1/keys", json={"scope": beta.crn}, headers=api.auth())
        assert by_crn.status_code == 201 and by_crn.json()["key"]["scope"] == beta.crn

        # a user key stored with a run scope (accepted before) reaches no model at all
        stored, odd = api.services.registry.create_api_key("odd", user="admin")
        _stored_as(api, stored.id, scope="crn:modelyard:run/whatever")
        assert (await c.get("/api/v1/models", headers=api.auth(odd))).json() == {"models": []}
        _error(await c.get("/api/v1/models/beta", headers=api.auth(odd)), 404)

    with_api(scenario)


# -- row 15: messages reveal only what the key may see ---------------------------------------------


def test_row15_not_found_answers_name_no_other_model(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        _models(api)
        scoped = api.auth(_key(api, "b-user", scope="beta"))
        for method, path in (
            ("GET", "/api/v1/models/nosuch"),
            ("GET", "/api/v1/models/nosuch/builds"),
            ("GET", "/api/v1/models/nosuch/tech"),
            ("POST", "/api/v1/models/nosuch/predict"),
        ):
            for headers in (api.auth(), scoped):  # no 404 lists other models, for anyone
                answer = await c.request(method, path, headers=headers)
                message = _error(answer, 404)
                assert "alpha" not in message and "beta" not in message, (path, message)
                assert "'nosuch'" in message, path
            other = await c.request(method, path.replace("nosuch", "alpha"), headers=scoped)
            assert _error(other, 404) == message.replace("nosuch", "alpha"), path

    with_api(scenario)


def test_row15_delayed_metrics_tell_a_scoped_key_nothing_about_which_uuids_exist(
    with_api: Any,
) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        alpha, beta = _models(api)
        uuid_a, _ = await _prediction(api, alpha)
        unknown = new_prediction_uuid()
        user_b = _key(api, "b-user", scope=beta.crn)
        user = _key(api, "user")

        def label(uuid: str) -> dict[str, Any]:
            return {"predictionUuid": uuid, "metrics": {"churned": 1}}

        # before: 404 for an unknown uuid, 403 for another model's (an existence oracle); now
        # the same answer for both
        answers = [
            await c.post("/api/v1/metrics/delayed", json=label(u), headers=api.auth(user_b))
            for u in (unknown, uuid_a)
        ]
        assert answers[0].status_code == answers[1].status_code in (403, 404)
        first, second = (a.json()["error"]["message"] for a in answers)
        assert first.replace(unknown, "U") == second.replace(uuid_a, "U")
        shown = [
            await c.get(f"/api/v1/predictions/{u}", headers=api.auth(user_b))
            for u in (unknown, uuid_a)
        ]
        assert shown[0].status_code == shown[1].status_code in (403, 404)
        first, second = (a.json()["error"]["message"] for a in shown)
        assert first.replace(unknown, "U") == second.replace(uuid_a, "U")
        # an unscoped key may label every model: it still learns that a uuid is unknown
        wide = await c.post("/api/v1/metrics/delayed", json=label(unknown), headers=api.auth(user))
        assert wide.status_code == 404

    with_api(scenario)
