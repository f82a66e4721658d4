"""``/api/v1/me``, users, teams, projects and collaborators against the real app in-process (its
lifespan run: the first start's ``admin`` user and ``default`` project), on SQLite and
PostgreSQL: who may do what, and that every refusal names the bad value and what is accepted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from server.conftest import Api


def _token(api: Api, user: str, **narrowing: Any) -> str:
    """A ``user`` key of ``user`` (made through the registry: keys are another suite's)."""
    _, token = api.services.registry.create_api_key(f"{user}-key", "user", user=user, **narrowing)
    return token


async def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _message(response: Any) -> str:
    return str(response.json()["error"]["message"])


async def _users_and_keys(api: Api) -> dict[str, str]:
    """bob and carol (carol with a password), each with a user key."""
    c, h = api.client, api.auth()
    await _ok(await c.post("/api/v1/users", json={"name": "bob"}, headers=h), 201)
    carol = {"name": "carol", "email": "carol@example.com", "password": "correct horse"}
    created = await _ok(await c.post("/api/v1/users", json=carol, headers=h), 201)
    assert created["user"]["has_password"] is True and "correct horse" not in str(created)
    return {"bob": _token(api, "bob"), "carol": _token(api, "carol")}


def test_me_says_who_is_calling(with_api: Callable[..., Any]) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        me = await _ok(await c.get("/api/v1/me", headers=api.auth()))
        assert me["user"]["name"] == "admin" and me["server_admin"] is True
        assert me["key"]["role"] == "admin"
        assert {p["full_name"]: p["role"] for p in me["projects"]} == {"admin/default": "admin"}
        keys = await _users_and_keys(api)
        bob = await _ok(await c.get("/api/v1/me", headers=api.auth(keys["bob"])))
        assert bob["user"]["name"] == "bob" and bob["server_admin"] is False
        assert bob["projects"] == [] and bob["key"]["project_crn"] is None
        assert (await c.get("/api/v1/me")).status_code == 401

    with_api(scenario, jobs=False)


def test_server_admins_manage_users_and_a_disabled_users_key_stops(
    with_api: Callable[..., Any],
) -> None:
    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        keys = await _users_and_keys(api)
        again = await c.post("/api/v1/users", json={"name": "bob"}, headers=h)
        assert again.status_code == 409 and "bob" in _message(again)
        listed = await _ok(await c.get("/api/v1/users", headers=h))
        assert {u["name"] for u in listed["users"]} == {"admin", "bob", "carol"}
        assert all("password" not in k for u in listed["users"] for k in u if k != "has_password")

        bob = api.auth(keys["bob"])
        refused = await c.post("/api/v1/users", json={"name": "eve"}, headers=bob)
        assert refused.status_code == 403 and "server administrator" in _message(refused)
        assert (await c.get("/api/v1/users", headers=bob)).status_code == 403

        disabled = await _ok(await c.post("/api/v1/users/bob/disable", headers=h))
        assert disabled["user"]["disabled_ms"] is not None
        gone = await c.get("/api/v1/me", headers=bob)
        assert gone.status_code == 401 and "disabled" in _message(gone)
        await _ok(await c.post("/api/v1/users/bob/enable", headers=h))
        await _ok(await c.get("/api/v1/me", headers=bob))

        unknown = await c.post("/api/v1/users/nobody/disable", headers=h)
        assert unknown.status_code == 404 and "nobody" in _message(unknown)
        myself = await c.post("/api/v1/users/admin/disable", headers=h)
        assert myself.status_code == 400 and "admin" in _message(myself)

        short = await c.put("/api/v1/users/bob/password", json={"password": "short"}, headers=h)
        assert short.status_code == 400 and "8" in _message(short)
        await _ok(
            await c.put("/api/v1/users/bob/password", json={"password": "long enough"}, headers=h),
            204,
        )
        assert api.services.registry.people.sign_in("bob", "long enough").name == "bob"

    with_api(scenario, jobs=False)


def test_a_user_changes_their_own_password_with_the_current_one(
    with_api: Callable[..., Any],
) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        carol = api.auth((await _users_and_keys(api))["carol"])
        wrong = {"current": "not it at all", "password": "battery staple"}
        assert (await c.put("/api/v1/me/password", json=wrong, headers=carol)).status_code == 401
        right = {"current": "correct horse", "password": "battery staple"}
        await _ok(await c.put("/api/v1/me/password", json=right, headers=carol), 204)
        people = api.services.registry.people
        assert people.sign_in("carol", "battery staple").name == "carol"

    with_api(scenario, jobs=False)


def test_teams_are_listed_to_users_and_changed_by_server_admins(
    with_api: Callable[..., Any],
) -> None:
    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        keys = await _users_and_keys(api)
        bob = api.auth(keys["bob"])
        await _ok(await c.post("/api/v1/teams", json={"name": "risk"}, headers=h), 201)
        assert (await c.post("/api/v1/teams", json={"name": "x"}, headers=bob)).status_code == 403
        team = await _ok(await c.put("/api/v1/teams/risk/members/bob", headers=h))
        assert team["team"]["members"] == ["bob"]
        unknown = await c.put("/api/v1/teams/risk/members/nobody", headers=h)
        assert unknown.status_code == 404 and "nobody" in _message(unknown)
        listed = await _ok(await c.get("/api/v1/teams", headers=bob))
        assert [(t["name"], t["members"]) for t in listed["teams"]] == [("risk", ["bob"])]
        removed = await _ok(await c.delete("/api/v1/teams/risk/members/bob", headers=h))
        assert removed["team"]["members"] == []
        await _ok(await c.delete("/api/v1/teams/risk", headers=h))
        missing = await c.delete("/api/v1/teams/risk", headers=h)
        assert missing.status_code == 404 and "risk" in _message(missing)

    with_api(scenario, jobs=False)


async def _projects_scenario(api: Api) -> None:
    c, h = api.client, api.auth()
    keys = await _users_and_keys(api)
    bob, carol = api.auth(keys["bob"]), api.auth(keys["carol"])
    made = await _ok(await c.post("/api/v1/projects", json={"name": "churn"}, headers=bob), 201)
    churn = made["project"]
    assert churn["full_name"] == "bob/churn" and churn["role"] == "admin"
    uuid = churn["crn"].rsplit("/", 1)[-1]
    other = await c.post("/api/v1/projects", json={"name": "x", "owner": "carol"}, headers=bob)
    assert other.status_code == 403 and "carol" in _message(other)
    for_carol = {"name": "churn", "owner": "carol", "description": "carol's"}
    await _ok(await c.post("/api/v1/projects", json=for_carol, headers=h), 201)

    mine = await _ok(await c.get("/api/v1/projects", headers=bob))
    assert [p["full_name"] for p in mine["projects"]] == ["bob/churn"]
    every = await _ok(await c.get("/api/v1/projects", params={"name": "churn"}, headers=h))
    assert sorted(p["full_name"] for p in every["projects"]) == ["bob/churn", "carol/churn"]

    # carol has no role in bob/churn: the same 404 as a project that does not exist
    hidden = await c.get(f"/api/v1/projects/{uuid}", headers=carol)
    unknown = await c.get("/api/v1/projects/no-such-project", headers=carol)
    assert hidden.status_code == unknown.status_code == 404
    assert "bob" not in _message(hidden)

    shared = await c.put(
        f"/api/v1/projects/{uuid}/collaborators/user/carol", json={"role": "viewer"}, headers=bob
    )
    assert (await _ok(shared))["collaborator"]["role"] == "viewer"
    view = await _ok(await c.get(f"/api/v1/projects/{uuid}", headers=carol))
    assert view["project"]["role"] == "viewer" and view["models"] == [] == view["jobs"]
    people = await _ok(await c.get(f"/api/v1/projects/{uuid}/collaborators", headers=carol))
    assert {(x["name"], x["role"]) for x in people["collaborators"]} >= {
        ("bob", "admin"),
        ("carol", "viewer"),
    }
    denied = await c.delete(f"/api/v1/projects/{uuid}", headers=carol)
    assert denied.status_code == 403
    assert "viewer" in _message(denied) and "admin" in _message(denied)
    path = f"/api/v1/projects/{uuid}/collaborators"
    bad_role = await c.put(f"{path}/user/carol", json={"role": "owner"}, headers=bob)
    assert bad_role.status_code == 400
    assert "'owner'" in _message(bad_role) and "contributor" in _message(bad_role)
    bad_kind = await c.put(f"{path}/group/carol", json={"role": "viewer"}, headers=bob)
    assert bad_kind.status_code == 400 and "'group'" in _message(bad_kind)
    nobody = await c.put(f"{path}/user/nobody", json={"role": "viewer"}, headers=bob)
    assert nobody.status_code == 404 and "nobody" in _message(nobody)
    last = await c.delete(f"{path}/user/bob", headers=bob)
    assert last.status_code == 409, last.text
    await _ok(await c.delete(f"{path}/user/carol", headers=bob))
    assert (await c.get(f"/api/v1/projects/{uuid}", headers=carol)).status_code == 404

    api.services.registry.create_model("scorer", project_crn=churn["crn"])
    busy = await c.delete(f"/api/v1/projects/{uuid}", headers=bob)
    assert busy.status_code == 409 and "scorer" in _message(busy)
    api.services.registry.delete_model("scorer")
    gone = await _ok(await c.delete(f"/api/v1/projects/{uuid}", headers=bob))
    assert gone["deleted"] == "bob/churn"
    assert (await c.get(f"/api/v1/projects/{uuid}", headers=bob)).status_code == 404


def test_projects_and_collaborators(with_api: Callable[..., Any]) -> None:
    with_api(_projects_scenario, jobs=False)


@pytest.mark.postgres
def test_projects_and_collaborators_on_postgres(
    with_api: Callable[..., Any], postgres_schema_url: str
) -> None:
    with_api(_projects_scenario, jobs=False, database_url=postgres_schema_url)


def test_a_narrowed_key_shows_its_narrowing_and_creates_no_project(
    with_api: Callable[..., Any],
) -> None:
    async def scenario(api: Api) -> None:
        c = api.client
        bob = api.auth((await _users_and_keys(api))["bob"])
        made = await _ok(await c.post("/api/v1/projects", json={"name": "churn"}, headers=bob), 201)
        crn = made["project"]["crn"]
        narrow = api.auth(_token(api, "bob", project=crn, project_role="viewer"))
        me = await _ok(await c.get("/api/v1/me", headers=narrow))
        assert me["key"]["project_crn"] == crn and me["key"]["project_role"] == "viewer"
        assert [(p["full_name"], p["role"]) for p in me["projects"]] == [("bob/churn", "viewer")]
        refused = await c.post("/api/v1/projects", json={"name": "more"}, headers=narrow)
        assert refused.status_code == 403
        assert "narrowed to project" in _message(refused) and "'viewer'" in _message(refused)

    with_api(scenario, jobs=False)
