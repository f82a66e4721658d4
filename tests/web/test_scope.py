"""A key's scope, over the real app in-process: each test replays one probe of issue 10 (rows 1,
2, 3, 4, 12 and two hardening items of row 15) as it was reported, then checks the rule that
fixes it (``modelyard.web.auth``, used by the REST routes and the dashboard alike).

"alpha" is model A, "beta" model B; the keys under test are limited to beta."""

from __future__ import annotations

import asyncio
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.ids import new_crn, new_prediction_uuid
from modelyard.registry import Model, Registry
from modelyard.store.sqlaccess import sql, transaction

from .conftest import Api

DB_PASSWORD = "s3cret-db-password"


def _models(api: Api) -> tuple[Model, Model]:
    registry = api.services.registry
    alpha, _ = registry.create_model("alpha")
    beta, _ = registry.create_model("beta")
    return alpha, beta


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


async def _sign_in(client: httpx.AsyncClient, token: str) -> str:
    """Sign in to the dashboard through its form; returns the session's CSRF token."""
    page = await client.get("/ui/login")
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert login_csrf, page.text
    answer = await client.post(
        "/ui/login", data={"csrf": login_csrf.group(1), "api_key": token, "next": "/ui/"}
    )
    assert answer.status_code == 303, answer.text
    overview = await client.get("/ui/")
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', overview.text)
    assert found, overview.text
    return found.group(1)


def _error(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, (answer.request.url, answer.text)
    message: str = answer.json()["error"]["message"]
    return message


# -- row 1: a scoped admin key escapes its scope ---------------------------------------------------


def test_row1_a_scoped_admin_key_is_refused_and_one_stored_earlier_administers_nothing(
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
        assert "unscoped admin key" in message
        keys = (await c.get("/api/v1/keys", headers=api.auth())).json()["keys"]
        assert sorted(k["role"] for k in keys) == ["admin", "run"]  # nothing was stored

        # ... and a scoped admin key a database may already hold (created before the check)
        stored, scoped_admin = api.services.registry.create_api_key("b-admin", scope=beta.crn)
        _stored_as(api, stored.id, role="admin")
        project = tmp_path / "job-project"
        project.mkdir()
        (project / "job.py").write_text("print('hi')\n")
        for method, path, body in (
            ("POST", "/api/v1/keys", {"role": "admin"}),  # an unscoped admin key: 201 before
            ("POST", "/api/v1/keys", {"role": "user", "scope": beta.crn}),
            ("GET", "/api/v1/keys", None),
            ("POST", "/api/v1/models/alpha/stop", None),  # another model: 200 before
            ("POST", "/api/v1/models/beta/stop", None),
            ("POST", "/api/v1/models/beta/rotate-key", None),
            (
                "POST",
                "/api/v1/jobs",
                {"name": "j", "project": str(project), "script": "job.py", "manual": True},
            ),
        ):
            answer = await c.request(method, path, json=body, headers=api.auth(scoped_admin))
            message = _error(answer, 403)
            assert "a limited key may not administer" in message, (method, path)
        assert len((await c.get("/api/v1/keys", headers=api.auth())).json()["keys"]) == 3
        jobs = (await c.get("/api/v1/jobs", headers=api.auth())).json()["jobs"]
        assert "j" not in [j["name"] for j in jobs]
        # it keeps what its scope gives a user key: reading its own model
        own = await c.get("/api/v1/models/beta", headers=api.auth(scoped_admin))
        assert own.status_code == 200, own.text

        # the dashboard decides with the same rule
        csrf = await _sign_in(c, scoped_admin)
        page = await c.get("/ui/keys")
        assert page.status_code == 403 and "a limited key may not administer" in page.text
        form = await c.post("/ui/keys", data={"csrf": csrf, "name": "x", "role": "admin"})
        assert form.status_code == 403
        rolled = await c.post("/ui/models/alpha/rollback", data={"csrf": csrf})
        assert rolled.status_code == 403
        assert len((await c.get("/api/v1/keys", headers=api.auth())).json()["keys"]) == 3

    with_api(scenario)


# -- row 2: scope on reads ------------------------------------------------------------------------

HELLO = "print('hello from a job', flush=True)\n"


@pytest.mark.slow  # runs a job (a process)
def test_row2_a_scoped_user_key_reads_its_own_model_only(with_api: Any, tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        alpha, beta = _models(api)
        _, user_b = api.services.registry.create_api_key("b-user", scope=beta.crn)
        project = tmp_path / "jobs"
        project.mkdir()
        (project / "hello.py").write_text(HELLO)
        job = {"name": "hello", "project": str(project), "script": "hello.py", "manual": True}
        assert (await c.post("/api/v1/jobs", json=job, headers=api.auth())).status_code == 201
        run = (await c.post("/api/v1/jobs/hello/run", headers=api.auth())).json()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = await c.get(f"/api/v1/runs/{run['uuid']}", headers=api.auth())
            if shown.json()["state"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.1)
        scoped = api.auth(user_b)

        listed = (await c.get("/api/v1/models", headers=scoped)).json()["models"]
        assert [m["name"] for m in listed] == ["beta"]  # alpha was listed before
        for path in (
            "/api/v1/models/alpha",
            "/api/v1/models/alpha/builds",
            "/api/v1/models/alpha/logs",
            "/api/v1/models/alpha/tech",
            "/api/v1/models/alpha/predictions",
        ):
            message = _error(await c.get(path, headers=scoped), 403)
            assert "alpha" in message and alpha.crn not in message, path
        for path in (
            "/api/v1/models/beta",
            "/api/v1/models/beta/builds",
            "/api/v1/models/beta/logs",
        ):
            assert (await c.get(path, headers=scoped)).status_code == 200, path
        # jobs belong to no model: a scoped key sees none of them, nor their runs
        assert (await c.get("/api/v1/jobs", headers=scoped)).json() == {"jobs": []}
        for path in (
            "/api/v1/jobs/hello",
            "/api/v1/jobs/hello/runs",
            f"/api/v1/runs/{run['uuid']}",
            f"/api/v1/runs/{run['uuid']}/logs",
        ):
            message = _error(await c.get(path, headers=scoped), 403)
            assert "belong to no single model" in message, path
        # the same run read by an unscoped user key: allowed (its log says hello)
        _, user = api.services.registry.create_api_key("user")
        log = await c.get(f"/api/v1/runs/{run['uuid']}/logs", headers=api.auth(user))
        assert log.status_code == 200 and "hello from a job" in log.text
        # the server's Prometheus metrics cover every model
        assert (await c.get("/metrics", headers=scoped)).status_code == 403

        # the dashboard answers as the API does: one rule
        await _sign_in(c, user_b)
        assert (await c.get("/ui/models/alpha")).status_code == 403
        assert (await c.get("/ui/models/beta")).status_code == 200
        jobs_page = await c.get("/ui/jobs")
        assert jobs_page.status_code == 200 and "hello.py" not in jobs_page.text

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
        _, user_b = api.services.registry.create_api_key("b-user", scope=beta.crn)
        scoped = api.auth(user_b)

        # the probe: a key scoped to B posts a label onto a prediction of A (204 and stored)
        label = {"predictionUuid": uuid_a, "metrics": {"churned": 1}}
        message = _error(await c.post("/api/v1/metrics/delayed", json=label, headers=scoped), 403)
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
        assert alpha.crn not in _error(answer, 403)

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
            _error(await c.post(path, json=body, headers=scoped), 403)
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
            _error(await c.put(path, json=body, headers=scoped), 403)
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
def test_row4_deployment_env_values_are_shown_to_admins_only(with_api: Any, tmp_path: Path) -> None:
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
        _, user = registry.create_api_key("user")
        _, scoped = registry.create_api_key("alpha-user", scope="alpha")

        for token in (user, scoped):
            listed = await c.get("/api/v1/models", headers=api.auth(token))
            shown = await c.get("/api/v1/models/alpha", headers=api.auth(token))
            assert DB_PASSWORD not in listed.text and DB_PASSWORD not in shown.text
            [row] = listed.json()["models"]
            assert row["active_deployment"]["env"] == {"DB_PASSWORD": "***"}
            status = shown.json()
            assert status["active"]["env"] == {"DB_PASSWORD": "***"}
            assert [d["env"] for d in status["deployments"]] == [{"DB_PASSWORD": "***"}]
            assert status["model"]["crn"] == alpha.crn
        admin = (await c.get("/api/v1/models/alpha", headers=api.auth())).json()
        assert admin["active"]["env"] == {"DB_PASSWORD": DB_PASSWORD}
        # the dashboard's model page draws from the same masked view
        await _sign_in(c, user)
        page = await c.get("/ui/models/alpha")
        assert page.status_code == 200 and DB_PASSWORD not in page.text
        stopped = await c.post("/api/v1/models/alpha/stop", headers=api.auth())
        assert stopped.status_code == 200, stopped.text

    with_api(scenario)


# -- row 12: the scope is validated at creation ---------------------------------------------------


def test_row12_a_key_scope_must_name_an_existing_model(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        alpha, beta = _models(api)
        unknown_model = new_crn("model")
        run_scope = new_crn("run")
        for body, words in (
            ({"scope": "../../"}, "scope='../../' is not an existing model"),
            ({"scope": unknown_model}, f"scope={unknown_model!r} is not an existing model"),
            ({"scope": "crn:modelyard:run/whatever"}, "is a job run's scope"),
            ({"role": "run", "scope": "crn:modelyard:run/whatever"}, "is a job run's scope"),
            ({"role": "run", "scope": run_scope}, "the runner mints that key"),
            ({"role": "admin", "scope": "beta"}, "refused for an admin key"),
        ):
            message = _error(await c.post("/api/v1/keys", json=body, headers=api.auth()), 400)
            assert words in message, (body, message)
            assert "accepted" in message
        keys = (await c.get("/api/v1/keys", headers=api.auth())).json()["keys"]
        assert len(keys) == 2  # nothing was stored

        # a model's name or CRN is accepted; the CRN is what is stored
        by_name = await c.post("/api/v1/keys", json={"scope": "beta"}, headers=api.auth())
        assert by_name.status_code == 201 and by_name.json()["key"]["scope"] == beta.crn
        by_crn = await c.post(
            "/api/v1/keys", json={"role": "run", "scope": alpha.crn}, headers=api.auth()
        )
        assert by_crn.status_code == 201 and by_crn.json()["key"]["scope"] == alpha.crn

        # the dashboard's form creates keys through the same check
        csrf = await _sign_in(c, api.admin)
        page = await c.post("/ui/keys", data={"csrf": csrf, "name": "x", "scope": "../../"})
        assert page.status_code == 400 and "is not an existing model" in page.text

        # a user key stored with a run scope (accepted before) was unscoped for models: it now
        # reaches no model at all (fails closed)
        stored, odd = api.services.registry.create_api_key("odd")
        _stored_as(api, stored.id, scope="crn:modelyard:run/whatever")
        assert (await c.get("/api/v1/models", headers=api.auth(odd))).json() == {"models": []}
        _error(await c.get("/api/v1/models/alpha", headers=api.auth(odd)), 403)
        overview = await c.get("/api/v1/overview", headers=api.auth(odd))
        assert overview.json()["models"] == []

    with_api(scenario)


# -- row 15: messages reveal only what the key may see ---------------------------------------------


def test_row15_not_found_answers_name_no_other_model_to_a_scoped_key(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        _, beta = _models(api)
        _, user_b = api.services.registry.create_api_key("b-user", scope=beta.crn)
        _, user = api.services.registry.create_api_key("user")
        for method, path, params in (
            ("GET", "/api/v1/models/nosuch", None),
            ("GET", "/api/v1/models/nosuch/builds", None),
            ("GET", "/api/v1/models/nosuch/tech", None),
            ("POST", "/api/v1/models/nosuch/predict", None),
            ("GET", "/api/v1/monitors/resolve", {"model": "nosuch"}),
        ):
            # an unscoped key may see every model: its 404 may list them
            wide = await c.request(method, path, params=params, headers=api.auth(user))
            assert wide.status_code == 404 and "alpha" in wide.text, (path, wide.text)
            # a scoped key gets the 403 it gets for another model, listing none
            narrow = await c.request(method, path, params=params, headers=api.auth(user_b))
            message = _error(narrow, 403)
            assert "alpha" not in message and "'nosuch'" in message, path
        other = await c.get("/api/v1/models/alpha", headers=api.auth(user_b))
        assert _error(other, 403) == message.replace("nosuch", "alpha")
        await _sign_in(c, user_b)
        page = await c.get("/ui/models/nosuch")
        assert page.status_code == 403 and "alpha" not in page.text

    with_api(scenario)


def test_row15_delayed_metrics_tell_a_scoped_key_nothing_about_which_uuids_exist(
    with_api: Any,
) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        alpha, beta = _models(api)
        uuid_a, _ = await _prediction(api, alpha)
        unknown = new_prediction_uuid()
        _, user_b = api.services.registry.create_api_key("b-user", scope=beta.crn)
        _, user = api.services.registry.create_api_key("user")

        def label(uuid: str) -> dict[str, Any]:
            return {"predictionUuid": uuid, "metrics": {"churned": 1}}

        # before: 404 for an unknown uuid, 403 for another model's (an existence oracle)
        answers = [
            await c.post("/api/v1/metrics/delayed", json=label(u), headers=api.auth(user_b))
            for u in (unknown, uuid_a)
        ]
        first, second = (_error(a, 403) for a in answers)
        assert first.replace(unknown, "U") == second.replace(uuid_a, "U")
        shown = [
            await c.get(f"/api/v1/predictions/{u}", headers=api.auth(user_b))
            for u in (unknown, uuid_a)
        ]
        first, second = (_error(a, 403) for a in shown)
        assert first.replace(unknown, "U") == second.replace(uuid_a, "U")
        # an unscoped key may label every model: it still learns that a uuid is unknown
        wide = await c.post("/api/v1/metrics/delayed", json=label(unknown), headers=api.auth(user))
        assert wide.status_code == 404

    with_api(scenario)
