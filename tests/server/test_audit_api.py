"""The audit log through the real app: state-changing requests are recorded by ``web.audit``
(who, what, which object, which project, from where, the outcome), ``GET /api/v1/audit`` reads
them with its filters and its rule (server admins everything, a project's admins their project),
nothing can write or delete entries through the API, and no token, key or password is ever
stored (every raw row is searched for every one used)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from modelyard.registry import Registry
from modelyard.store import open_store
from modelyard.store.base import MetricsStore
from modelyard.store.sqlaccess import reading, sql, transaction
from modelyard.web.audit import audited

from .conftest import Api

BOB_PASSWORD = "bob-password-123"
BAD_TOKEN = "myk_" + "N" * 43


def raw_rows(store: MetricsStore) -> str:
    """Every stored audit row, as one text to search."""
    with reading(store) as cur:
        cur.execute(sql(store, "SELECT * FROM audit_log"))
        return repr([tuple(row) for row in cur.fetchall()])


async def entries(api: Api, token: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """The log as ``token`` (the admin by default) reads it, once every request is written."""
    assert api.app.state.audit_recorder.flush(10)
    answer = await api.client.get("/api/v1/audit", params=params, headers=api.auth(token))
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["entries"]
    return found


def one(found: list[dict[str, Any]], action: str, **fields: Any) -> dict[str, Any]:
    matches = [
        e for e in found if e["action"] == action and all(e.get(k) == v for k, v in fields.items())
    ]
    assert len(matches) == 1, (action, fields, found)
    return matches[0]


async def people(api: Api) -> dict[str, str]:
    """User bob (a viewer of the default project, owner of his project ``lab``) and his key;
    user carol (no role anywhere yet) and hers. Returns the tokens by user."""
    c, h = api.client, api.auth()
    for name in ("bob", "carol"):
        made = await c.post(
            "/api/v1/users", json={"name": name, "password": BOB_PASSWORD}, headers=h
        )
        assert made.status_code == 201, made.text
    tokens = {}
    for name in ("bob", "carol"):
        made = await c.post("/api/v1/keys", json={"name": f"{name}-key", "user": name}, headers=h)
        assert made.status_code == 201, made.text
        tokens[name] = made.json()["token"]
    shared = await c.put(
        "/api/v1/projects/default/collaborators/user/bob", json={"role": "viewer"}, headers=h
    )
    assert shared.status_code == 200, shared.text
    lab = await c.post("/api/v1/projects", json={"name": "lab"}, headers=api.auth(tokens["bob"]))
    assert lab.status_code == 201, lab.text
    return tokens


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_changes_are_recorded_with_actor_action_object_and_outcome(
    with_api: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    config = {}
    if backend == "postgres":
        config["database_url"] = request.getfixturevalue("postgres_schema_url")

    async def scenario(api: Api) -> None:
        c = api.client
        tokens = await people(api)
        bob = api.auth(tokens["bob"])
        # bob is a viewer of the default project: sharing it needs admin -> 403
        refused = await c.put(
            "/api/v1/projects/default/collaborators/user/bob", json={"role": "admin"}, headers=bob
        )
        assert refused.status_code == 403, refused.text
        # an unknown key: 401, and nobody to name
        unknown = await c.post("/api/v1/keys", json={"name": "x"}, headers=api.auth(BAD_TOKEN))
        assert unknown.status_code == 401
        # reads are not recorded
        assert (await c.get("/api/v1/keys", headers=api.auth())).status_code == 200

        found = await entries(api)
        default = (await c.get("/api/v1/projects/default", headers=api.auth())).json()
        default_crn = default.get("crn") or default["project"]["crn"]
        admin_key = api.services.registry.authenticate(api.admin)

        users = [e for e in found if e["action"] == "people.create_user"]
        assert len(users) == 2
        for made in users:
            assert (made["actor"], made["outcome"], made["status"]) == ("admin", "ok", 201)
            assert made["key_id"] == admin_key.id and made["object"] is None
            assert made["address"] == "127.0.0.1"
            assert made["details"]["method"] == "POST"
            assert made["details"]["route"] == "/api/v1/users"
            assert made["details"]["duration_ms"] >= 0 and len(made["details"]) == 3
        keys = [e for e in found if e["action"] == "keys.create_key" and e["status"] == 201]
        assert len(keys) == 2 and {e["actor"] for e in keys} == {"admin"}
        shared = one(found, "people.share", actor="admin")
        assert shared["object"] == "project=default,kind=user,name=bob"
        assert shared["project_crn"] == default_crn and shared["outcome"] == "ok"
        assert shared["project"] == "admin/default"
        one(found, "people.create_project", actor="bob", outcome="ok", status=201)
        denied = one(found, "people.share", actor="bob")
        assert (denied["outcome"], denied["status"]) == ("denied", 403)
        anonymous = one(found, "keys.create_key", actor="anonymous")
        assert (anonymous["outcome"], anonymous["status"], anonymous["key_id"]) == (
            "denied",
            401,
            None,
        )
        assert all(e["details"]["method"] != "GET" for e in found)
        assert [e["seq"] for e in found] == sorted((e["seq"] for e in found), reverse=True)

        text = raw_rows(api.services.store)
        for secret in (api.admin, *tokens.values(), BAD_TOKEN, BOB_PASSWORD):
            assert secret not in text

    with_api(scenario, **config)


def test_the_listing_filters_and_who_may_read_it(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        tokens = await people(api)
        bob, carol = api.auth(tokens["bob"]), api.auth(tokens["carol"])
        # bob, lab's owner, shares it with carol: an entry in project lab
        shared = await c.put(
            "/api/v1/projects/lab/collaborators/user/carol", json={"role": "viewer"}, headers=bob
        )
        assert shared.status_code == 200, shared.text
        everything = await entries(api)

        assert {e["actor"] for e in await entries(api, user="bob")} == {"bob"}
        assert len(await entries(api, user="bob")) == 2
        assert {e["action"] for e in await entries(api, action="people")} == {
            "people.create_user",
            "people.share",
            "people.create_project",
        }
        assert await entries(api, action="people.share", user="nobody") == []
        newest = everything[0]["at_ms"]
        assert all(e["at_ms"] >= newest for e in await entries(api, since=str(newest)))
        assert await entries(api, until="0") == []
        assert len(await entries(api, since="1h")) == len(everything)
        # paging: limit and next_before
        page = await c.get("/api/v1/audit", params={"limit": 2}, headers=api.auth())
        assert len(page.json()["entries"]) == 2
        rest = await entries(api, before=page.json()["next_before"])
        assert [e["seq"] for e in page.json()["entries"] + rest] == [e["seq"] for e in everything]

        # a project's admin reads that project's entries only
        lab = await entries(api, tokens["bob"], project="lab")
        assert [e["action"] for e in lab] == ["people.share"]
        assert lab[0]["project"] == "bob/lab" and lab[0]["object"].endswith("name=carol")
        # ... but not the whole log, nor a project where they are only a viewer
        whole = await c.get("/api/v1/audit", headers=bob)
        assert whole.status_code == 403 and "server administrator" in whole.text
        viewer = await c.get("/api/v1/audit", params={"project": "default"}, headers=bob)
        assert viewer.status_code == 403
        assert "viewer" in viewer.text and "admin or higher" in viewer.text
        # carol has no role in the default project: it is not even there for her
        hidden = await c.get("/api/v1/audit", params={"project": "admin/default"}, headers=carol)
        assert hidden.status_code == 404
        bad = await c.get("/api/v1/audit", params={"since": "yesterday"}, headers=api.auth())
        assert bad.status_code == 400 and "since='yesterday'" in bad.text

    with_api(scenario)


def test_the_log_cannot_be_written_or_deleted_through_the_api(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        await c.post("/api/v1/users", json={"name": "bob"}, headers=h)
        before = await entries(api)
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            answer = await c.request(method, "/api/v1/audit", headers=h, json={"actor": "x"})
            assert answer.status_code == 405, (method, answer.text)
        gone = await c.delete(f"/api/v1/audit/{before[0]['seq']}", headers=h)
        assert gone.status_code == 404
        after = await entries(api)
        assert after[-len(before) :] == before  # nothing changed or went
        # the attempts themselves are recorded, failed (refused before any key was looked at)
        attempts = after[: -len(before)]
        assert len(attempts) == 5 and {e["outcome"] for e in attempts} == {"failed"}
        assert {e["status"] for e in attempts} == {404, 405}

    with_api(scenario)


def test_entries_of_the_last_requests_are_written_at_shutdown(
    with_api: Any, modelyard_home: Path
) -> None:
    async def scenario(api: Api) -> None:
        for name in ("u1", "u2", "u3"):
            answer = await api.client.post("/api/v1/users", json={"name": name}, headers=api.auth())
            assert answer.status_code == 201

    with_api(scenario)  # no flush: the server's shutdown writes what is queued
    store = open_store(f"sqlite:///{modelyard_home / 'modelyard.db'}")
    try:
        found = Registry(store).audit.list(action="people.create_user")
        assert [(e.actor, e.status) for e in found] == [("admin", 201)] * 3
    finally:
        store.close()


@pytest.mark.slow
def test_deploy_scale_and_calls(with_api: Any, project: Path) -> None:
    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        body = {"project": str(project), "example": {"x": 1}}
        deployed = await c.post("/api/v1/models/churn/deploy", json=body, headers=h)
        assert deployed.status_code == 201, deployed.text
        access_key = deployed.json()["access_key"]
        model_project = deployed.json()["model"].get("project_crn")
        scaled = await c.post("/api/v1/models/churn/scale", json={"replicas": 2}, headers=h)
        assert scaled.status_code == 200, scaled.text
        missing = await c.post("/api/v1/models/nope/scale", json={"replicas": 2}, headers=h)
        assert missing.status_code == 404
        for _ in range(3):
            called = await c.post("/api/v1/models/churn/predict", json={"x": 1}, headers=h)
            assert called.status_code == 200
        answer = await c.post("/model", json={"accessKey": access_key, "request": {"x": 2}})
        assert answer.status_code in (200, 401)

        found = await entries(api)
        deploy = one(found, "models.deploy", object="churn")
        assert (deploy["actor"], deploy["outcome"], deploy["status"]) == ("admin", "ok", 201)
        assert deploy["project_crn"] == model_project and deploy["project_crn"]
        assert one(found, "models.scale", object="churn")["outcome"] == "ok"
        assert one(found, "models.scale", object="nope")["outcome"] == "failed"
        assert not [e for e in found if "predict" in e["action"] or e["action"].endswith("model")]
        text = raw_rows(api.services.store)
        assert access_key not in text and api.admin not in text

    with_api(scenario)


def test_requests_go_on_while_the_log_cannot_be_written(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        store, registry = api.services.store, api.services.registry

        def rename(old: str, new: str) -> None:
            transaction(store, lambda cur: cur.execute(f"ALTER TABLE {old} RENAME TO {new}"))

        rename("audit_log", "audit_log_away")
        try:
            made = await api.client.post("/api/v1/users", json={"name": "bob"}, headers=api.auth())
            assert made.status_code == 201  # the request is not held up nor refused
            assert api.app.state.audit_recorder.flush(10)
            assert registry.audit.pending == 1
        finally:
            rename("audit_log_away", "audit_log")
        made = await api.client.post("/api/v1/users", json={"name": "carol"}, headers=api.auth())
        assert made.status_code == 201
        found = await entries(api)
        assert [e["action"] for e in found] == ["people.create_user"] * 2
        assert registry.audit.pending == 0
        assert found[0]["at_ms"] >= found[1]["at_ms"]

    with_api(scenario)


def test_a_route_can_name_its_entry_or_leave_it_out(with_api: Any) -> None:
    """``request.state.audit``: a route says more than the trail knows, or records itself."""

    async def named(request: Request) -> JSONResponse:
        request.state.audit = {"actor": "someone", "object": "thing", "details": {"n": 1}}
        return JSONResponse({}, status_code=201)

    async def skipped(request: Request) -> JSONResponse:
        request.state.audit = {"skip": True}
        return JSONResponse({})

    async def broken(request: Request) -> JSONResponse:
        raise RuntimeError("a bug in a route")

    async def scenario(api: Api) -> None:
        routes = api.app.router.routes
        routes.insert(0, Route("/api/v1/test-named", named, methods=["POST"]))
        routes.insert(0, Route("/api/v1/test-skipped", skipped, methods=["POST"]))
        routes.insert(0, Route("/api/v1/test-broken", broken, methods=["POST"]))
        assert (await api.client.post("/api/v1/test-named")).status_code == 201
        assert (await api.client.post("/api/v1/test-skipped")).status_code == 200
        with pytest.raises(RuntimeError):  # (the in-process client re-raises what the app did)
            await api.client.post("/api/v1/test-broken")
        found = await entries(api)
        # (the action is the module without its _api suffix and the function: test_audit.*)
        assert [(e["actor"], e["action"], e["object"], e["outcome"]) for e in found] == [
            ("anonymous", "test_audit.broken", None, "failed"),
            ("someone", "test_audit.named", "thing", "ok"),
        ]
        assert found[0]["status"] == 500 and found[1]["details"] == {"n": 1}

    with_api(scenario)


@pytest.mark.parametrize(
    ("method", "path", "recorded"),
    [
        ("POST", "/api/v1/models/churn/deploy", True),
        ("DELETE", "/api/v1/keys/abc", True),
        ("PUT", "/api/v1/projects/lab/secrets/DB_URL", True),
        ("POST", "/api/v1/uploads", True),
        ("POST", "/ui/keys", True),
        ("GET", "/api/v1/models", False),
        ("HEAD", "/api/v1/models", False),
        ("OPTIONS", "/api/v1/keys", False),
        ("POST", "/model", False),
        ("POST", "/api/v1/models/churn/predict", False),
        ("POST", "/api/v1/models/churn/predict_batch", False),
        ("POST", "/api/v1/metrics/predictions", False),
        ("POST", "/api/v1/runs/8f5c3d1a/metrics", False),
        ("POST", "/api/v1/monitors/label-times", False),
        ("PUT", "/api/v1/uploads/blobs/" + "0" * 64, False),
        ("POST", "/api/v1/uploads/missing", False),
        ("POST", "/ui/login", False),
        ("POST", "/healthz", False),
    ],
)
def test_which_requests_are_recorded(method: str, path: str, recorded: bool) -> None:
    assert audited(method, path) is recorded


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_odd_queries_are_answered_never_a_server_error(
    with_api: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    config = {}
    if backend == "postgres":
        config["database_url"] = request.getfixturevalue("postgres_schema_url")

    async def scenario(api: Api) -> None:
        await api.client.post("/api/v1/users", json={"name": "bob"}, headers=api.auth())
        odd = [
            {"before": str(2**70)},
            {"before": "-1"},
            {"since": str(10**30)},
            {"until": "-" + "9" * 30},
            {"since": "99999999999999999999d"},
            {"limit": "0"},
            {"limit": "10001"},
            {"user": "\x00bob", "action": "people\x00%_"},
            {"action": "%"},
            {"project": "x" * 5000},
        ]
        for params in odd:
            answer = await api.client.get("/api/v1/audit", params=params, headers=api.auth())
            assert answer.status_code in (200, 400, 404, 422), (params, answer.text)
            if answer.status_code == 200:
                assert answer.json()["entries"] == [], params
        assert len(await entries(api)) == 1

    with_api(scenario, **config)
