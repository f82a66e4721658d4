"""The access rules through the real app (SQLite and PostgreSQL): the models routes, the predict
path, the keys routes and ``/metrics`` answer 2xx, 403 naming caller, role, project and the role
needed, or the 404 an unknown name gets (existence never leaks).

The world (as in test_access.py): ``alice`` owns project ``churn`` with model ``scorer``; ``bob``
is its viewer, ``carol`` its operator, ``erin`` its contributor; ``dave`` has no role there.
``admin`` (the server's first user) is a server administrator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from modelyard.registry import Registry

from .conftest import Api

USERS = {"bob": "viewer", "carol": "operator", "erin": "contributor", "dave": None}


@dataclass
class World:
    api: Api
    tokens: dict[str, str]  # user name -> token of a 'user' key (alice too)

    async def call(self, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
        token = self.api.admin if who == "admin" else self.tokens[who]
        return await self.api.client.request(method, path, headers=self.api.auth(token), **kw)


def _world(api: Api) -> World:
    registry: Registry = api.services.registry
    people = registry.people
    people.create_user("alice")
    churn = people.create_project("churn", owner="alice")
    for name, role in USERS.items():
        people.create_user(name)
        if role is not None:
            people.set_collaborator(churn.crn, "user", name, role)
    registry.create_model("scorer", project_crn=churn.crn)
    tokens = {
        name: registry.create_api_key(f"{name}-key", user=name)[1] for name in [*USERS, "alice"]
    }
    return World(api, tokens)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def run(request: pytest.FixtureRequest, with_api: Any) -> Any:
    """``run(scenario)``: the scenario against a server on SQLite, or on PostgreSQL."""
    if request.param == "sqlite":
        return with_api
    url = request.getfixturevalue("postgres_schema_url")
    return lambda scenario, **config: with_api(scenario, database_url=url, **config)


def _message(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, (answer.request.url, answer.status_code, answer.text)
    message: str = answer.json()["error"]["message"]
    return message


def test_model_routes_answer_404_without_a_role_and_403_naming_the_role(run: Any) -> None:
    async def scenario(api: Api) -> None:
        w = _world(api)
        unknown = _message(await w.call("dave", "GET", "/api/v1/models/nosuch"), 404)
        hidden = _message(await w.call("dave", "GET", "/api/v1/models/scorer"), 404)
        assert hidden == unknown.replace("nosuch", "scorer")  # the very same answer
        assert "churn" not in hidden and "alice" not in hidden
        assert _message(await w.call("admin", "GET", "/api/v1/models/nosuch"), 404) == unknown
        for who in ("bob", "carol", "alice", "admin"):
            shown = await w.call(who, "GET", "/api/v1/models/scorer")
            assert shown.status_code == 200, (who, shown.text)
            assert (await w.call(who, "GET", "/api/v1/models/scorer/builds")).status_code == 200

        scale = ("POST", "/api/v1/models/scorer/scale")
        assert _message(await w.call("bob", *scale, json={"replicas": 1}), 403) == (
            "user 'bob' is viewer in project 'alice/churn'; changing model 'scorer' needs "
            "contributor or higher (right 'change')"
        )
        low = _message(await w.call("carol", *scale, json={"replicas": 1}), 403)
        assert "user 'carol' is operator in project 'alice/churn'" in low
        _message(await w.call("dave", *scale, json={"replicas": 1}), 404)
        for who in ("erin", "alice", "admin"):  # allowed: nothing is deployed yet
            answer = await w.call(who, *scale, json={"replicas": 1})
            assert answer.status_code == 409, (who, answer.text)
        for path in ("stop", "start", "rollback", "rotate-key"):
            answer = await w.call("bob", "POST", f"/api/v1/models/scorer/{path}")
            assert answer.status_code == 403, (path, answer.text)
        assert (await w.call("bob", "DELETE", "/api/v1/models/scorer")).status_code == 403

    run(scenario)


def test_lists_keep_the_projects_a_caller_has_a_role_in(run: Any) -> None:
    async def scenario(api: Api) -> None:
        w = _world(api)
        api.services.registry.create_model("elsewhere")  # in the default project

        async def names(who: str, **params: str) -> list[str]:
            answer = await w.call(who, "GET", "/api/v1/models", params=params)
            assert answer.status_code == 200, answer.text
            return [m["name"] for m in answer.json()["models"]]

        assert await names("bob") == ["scorer"]
        assert await names("dave") == []
        assert await names("admin") == ["elsewhere", "scorer"]
        assert await names("admin", project="alice/churn") == ["scorer"]
        assert await names("bob", project="churn") == ["scorer"]  # a bare name bob can see
        unknown = _message(await w.call("dave", "GET", "/api/v1/models?project=nosuch"), 404)
        hidden = _message(await w.call("dave", "GET", "/api/v1/models?project=alice/churn"), 404)
        assert hidden == unknown.replace("nosuch", "alice/churn")

    run(scenario)


def test_deploying_needs_contributor_in_the_target_project(run: Any) -> None:
    async def scenario(api: Api) -> None:
        w = _world(api)
        body = {"upload": "u-none", "file": "predict.py"}
        new = "/api/v1/models/fresh/deploy?project=alice/churn"
        message = _message(await w.call("bob", "POST", new, json=body), 403)
        assert message.startswith("user 'bob' is viewer in project 'alice/churn'; changing new")
        assert "contributor or higher" in message
        _message(await w.call("dave", "POST", new, json=body), 404)  # churn is hidden from dave
        # a folder on the server's machine: server administrators only, even for the owner
        folder = {"project": "/srv/code", "file": "predict.py"}
        refused = await w.call("alice", "POST", new, json=folder)
        assert refused.status_code == 403 and "server administrator" in refused.text
        assert "fresh" not in [m.name for m in api.services.registry.list_models()]
        # models do not move between projects by deploying
        moved = "/api/v1/models/scorer/deploy?project=admin/default"
        message = _message(await w.call("admin", "POST", moved, json=body), 400)
        assert "model 'scorer' belongs to project 'alice/churn', not 'admin/default'" in message

    run(scenario)


def test_calling_a_model_needs_operator(run: Any) -> None:
    async def scenario(api: Api) -> None:
        w = _world(api)
        call = ("POST", "/api/v1/models/scorer/predict")
        low = _message(await w.call("bob", *call, json={"x": 1}), 403)
        assert low == (
            "user 'bob' is viewer in project 'alice/churn'; calling model 'scorer' needs "
            "operator or higher (right 'operate')"
        )
        for who in ("carol", "erin", "alice", "admin"):  # allowed: 503, nothing deployed
            answer = await w.call(who, *call, json={"x": 1})
            assert answer.status_code == 503, (who, answer.text)
        hidden = _message(await w.call("dave", *call, json={"x": 1}), 404)
        unknown = _message(await w.call("dave", "POST", "/api/v1/models/nosuch/predict"), 404)
        assert hidden == unknown.replace("nosuch", "scorer")
        scorer = api.services.registry.get_model("scorer")
        _, replica_key = api.services.registry.create_api_key("r", role="run", scope=scorer.crn)
        answer = await api.client.post(call[1], json={"x": 1}, headers=api.auth(replica_key))
        assert "may not call models" in _message(answer, 403)

    run(scenario)


def test_users_manage_their_own_keys_and_admins_everyones(run: Any) -> None:
    async def scenario(api: Api) -> None:
        w = _world(api)
        people = api.services.registry.people
        made = await w.call("bob", "POST", "/api/v1/keys", json={"name": "laptop"})
        assert made.status_code == 201, made.text
        assert made.json()["key"]["user_id"] == people.get_user("bob").id
        listed = (await w.call("bob", "GET", "/api/v1/keys")).json()["keys"]
        assert {k["name"] for k in listed} == {"bob-key", "laptop"}
        other = await w.call("bob", "POST", "/api/v1/keys", json={"user": "carol"})
        assert "may create keys for themselves only" in _message(other, 403)
        admin_key = await w.call("bob", "POST", "/api/v1/keys", json={"role": "admin"})
        assert "may not create an 'admin' key" in _message(admin_key, 403)
        alice_key = next(k for k in api.services.registry.list_api_keys() if k.name == "alice-key")
        gone = await w.call("bob", "DELETE", f"/api/v1/keys/{alice_key.id}")
        unknown = await w.call("bob", "DELETE", "/api/v1/keys/nosuch")
        assert _message(gone, 404) == _message(unknown, 404).replace("nosuch", alice_key.id)
        assert (await w.call("bob", "DELETE", f"/api/v1/keys/{listed[1]['id']}")).status_code == 200
        # a server administrator sees every key and makes one for bob
        every = (await w.call("admin", "GET", "/api/v1/keys")).json()["keys"]
        assert {"alice-key", "bob-key", "laptop"} <= {k["name"] for k in every}
        for_bob = await w.call(
            "admin",
            "POST",
            "/api/v1/keys",
            json={"name": "ci", "user": "bob", "project": "alice/churn", "project_role": "viewer"},
        )
        assert for_bob.status_code == 201, for_bob.text
        assert for_bob.json()["key"]["project_role"] == "viewer"
        # a narrowed key passes its narrowing on and never mints a wider key
        narrowed = for_bob.json()["token"]
        wider = await api.client.post(
            "/api/v1/keys", json={"project_role": "contributor"}, headers=api.auth(narrowed)
        )
        assert "narrowed to viewer" in _message(wider, 403)
        same = await api.client.post("/api/v1/keys", json={}, headers=api.auth(narrowed))
        assert same.status_code == 201, same.text
        assert same.json()["key"]["project_role"] == "viewer"
        assert same.json()["key"]["project_crn"] == for_bob.json()["key"]["project_crn"]
        # a run key belongs to nobody: no keys for it
        scorer = api.services.registry.get_model("scorer")
        _, run_key = api.services.registry.create_api_key("r", role="run", scope=scorer.crn)
        refused = await api.client.get("/api/v1/keys", headers=api.auth(run_key))
        assert refused.status_code == 403

    run(scenario)


def test_server_metrics_and_disabled_users(run: Any) -> None:
    async def scenario(api: Api) -> None:
        w = _world(api)
        low = _message(await w.call("alice", "GET", "/metrics"), 403)
        assert "user 'alice' is not a server administrator" in low
        assert (await w.call("admin", "GET", "/metrics")).status_code == 200
        api.services.registry.people.set_disabled("bob", True)
        for path in ("/api/v1/models", "/api/v1/models/scorer"):
            refused = await w.call("bob", "GET", path)
            assert "user 'bob' is disabled" in _message(refused, 401)
        call = await w.call("bob", "POST", "/api/v1/models/scorer/predict", json={})
        assert "user 'bob' is disabled" in _message(call, 401)

    run(scenario)
