"""Every route needs a key except the public ones, checked over the app's own route list so that
a route added later cannot escape: without a key, with a wrong key, with a revoked key; a run key
reaches only the routes whose rule takes run keys; the admin key file is 0600 and printed once.
(Users, projects and roles route by route: tests/server/test_authz_matrix.py and
tests/web/test_access*.py.)"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from modelyard.server import PUBLIC_PATHS
from modelyard.web.access import Rule

from .conftest import Api

_SAMPLE = {"name": "nosuchmodel", "key_id": "k_unknown", "run_id": "run-1"}


def _calls(api: Api) -> list[tuple[str, str]]:
    """(method, concrete path) for every route the app serves, path parameters filled in."""
    calls = []
    for template, methods in _flatten(api.app.routes, ""):
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: _SAMPLE.get(m.group(1), "sample"), template)
        calls.extend((method, path) for method in sorted(methods) if method != "HEAD")
    return calls


def _flatten(routes: list[Any], prefix: str) -> list[tuple[str, set[str]]]:
    """Routes with their full paths, through included routers (FastAPI wraps those)."""
    found: list[tuple[str, set[str]]] = []
    for route in routes:
        if isinstance(route, Route):
            found.append((prefix + route.path, set(route.methods or ())))
        elif hasattr(route, "original_router"):
            found += _flatten(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            raise AssertionError(f"unexpected route type {route!r}: teach this test about it")
    return found


def _protected(api: Api) -> list[tuple[str, str]]:
    # The dashboard (/ui/..., and / which sends the browser there) answers a missing session with
    # its sign-in page rather than a 401; tests/ui/test_session.py checks its own access rules.
    return [
        (m, p)
        for m, p in _calls(api)
        if p not in PUBLIC_PATHS and p != "/" and not p.startswith("/ui/")
    ]


def test_the_public_routes_are_exactly_the_documented_ones(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        paths = {p for _, p in _calls(api)}
        assert paths >= PUBLIC_PATHS
        for path in sorted(PUBLIC_PATHS & paths):
            assert (await api.client.get(path)).status_code == 200, path
        # and the route list really covers the API: the gateway, keys, metrics, models
        for needed in ("/model", "/metrics", "/api/v1/keys", "/api/v1/metrics/predictions"):
            assert needed in paths

    with_api(scenario)


@pytest.mark.parametrize("which", ["none", "wrong", "revoked", "not bearer"])
def test_every_other_route_refuses_a_missing_wrong_or_revoked_key(
    with_api: Any, which: str
) -> None:
    async def scenario(api: Api) -> None:
        _, access_key = api.services.registry.create_model("guarded")
        headers: dict[str, str] = {}
        if which == "wrong":
            headers = api.auth("myk_" + "x" * 43)
        elif which == "revoked":
            key, token = api.services.registry.create_api_key("gone", role="admin", user="admin")
            api.services.registry.revoke_api_key(key.id)
            headers = api.auth(token)
        elif which == "not bearer":
            headers = {"Authorization": f"Basic {api.admin}"}
        calls = _protected(api)
        assert len(calls) >= 15
        for method, path in calls:
            body: Any = {}
            if path == "/model":
                body = {"accessKey": access_key, "request": {"x": 1}}
            answer = await api.client.request(method, path, json=body, headers=headers)
            assert answer.status_code == 401, (method, path, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "unauthorized"
            assert answer.headers["www-authenticate"] == "Bearer"
            if which == "wrong":
                assert "x" * 20 not in error["message"]  # the token is never echoed

    with_api(scenario)


def _rules(api: Api) -> dict[tuple[str, str], Rule]:
    """(method, path template) -> the Rule of its ``requires`` dependency, for FastAPI routes."""
    found: dict[tuple[str, str], Rule] = {}
    for route in _api_routes(api.app.routes, ""):
        path, methods, dependant = route
        for dependency in dependant.dependencies:
            rule = getattr(dependency.call, "rule", None)
            if isinstance(rule, Rule):
                found.update({(m, path): rule for m in methods})
    return found


def _api_routes(routes: list[Any], prefix: str) -> list[tuple[str, set[str], Any]]:
    found: list[tuple[str, set[str], Any]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((prefix + route.path, set(route.methods or ()), route.dependant))
        elif hasattr(route, "original_router"):
            inner = route.original_router.routes
            found += _api_routes(inner, prefix + route.include_context.prefix)
    return found


def test_a_run_key_reaches_only_routes_that_take_run_keys(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        registry = api.services.registry
        model, _ = registry.create_model("nosuchmodel")
        _, run_key = registry.create_api_key("replicas", role="run", scope=model.crn)
        rules = _rules(api)
        assert len(rules) >= 10
        for (method, template), rule in sorted(rules.items()):
            path = re.sub(
                r"\{(\w+)(:\w+)?\}", lambda m: _SAMPLE.get(m.group(1), "sample"), template
            )
            if not path.startswith("/api/"):
                continue  # the dashboard answers with its pages (tests/ui)
            run = await api.client.request(method, path, json={}, headers=api.auth(run_key))
            assert run.status_code != 401, (method, path, run.text)
            if rule.run_keys:
                assert "run keys reach only" not in run.text, (method, path, run.text)
            else:
                assert run.status_code == 403, (method, path, run.text)
                assert "run keys reach only" in run.json()["error"]["message"]
        for path in ("/api/v1/models/nosuchmodel/predict", "/metrics"):
            method = "GET" if path == "/metrics" else "POST"
            refused = await api.client.request(method, path, headers=api.auth(run_key))
            assert refused.status_code == 403, (path, refused.text)


def test_metrics_needs_a_key_unless_opened(with_api: Any) -> None:
    async def closed(api: Api) -> None:
        assert (await api.client.get("/metrics")).status_code == 401
        answer = await api.client.get("/metrics", headers=api.auth())
        assert answer.status_code == 200
        assert "modelyard_requests_total" in answer.text

    async def opened(api: Api) -> None:
        assert (await api.client.get("/metrics")).status_code == 200

    with_api(closed)
    with_api(opened, public_metrics=True)


def test_first_start_writes_the_admin_key_0600_once(
    with_api: Any, modelyard_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario(api: Api) -> str:
        answer = await api.client.get("/api/v1/keys", headers=api.auth())
        # no server-wide replica key any more: each deployment mints its own
        assert sorted(k["role"] for k in answer.json()["keys"]) == ["admin"]
        return api.admin

    first = with_api(scenario)
    mode = stat.S_IMODE((modelyard_home / "admin.key").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(modelyard_home.stat().st_mode) == 0o700
    assert first in capsys.readouterr().out
    second = with_api(lambda api: _admin(api))
    assert second == first
    assert first not in capsys.readouterr().out
    # the database holds its hash, never the token
    assert first.encode() not in (modelyard_home / "modelyard.db").read_bytes()


async def _admin(api: Api) -> str:
    return api.admin


def test_a_scoped_key_acts_on_its_model_only(with_api: Any) -> None:
    async def scenario(api: Api) -> None:
        registry = api.services.registry
        mine, _ = registry.create_model("mine")
        registry.create_model("theirs")
        _, token = registry.create_api_key("scoped", user="admin", scope=mine.crn)
        other = await api.client.post(
            "/api/v1/models/theirs/predict", json={"x": 1}, headers=api.auth(token)
        )
        unknown = await api.client.post(
            "/api/v1/models/nosuch/predict", json={"x": 1}, headers=api.auth(token)
        )
        assert other.status_code == unknown.status_code == 404  # as if it did not exist
        assert other.json()["success"] is False
        own = await api.client.post(
            "/api/v1/models/mine/predict", json={"x": 1}, headers=api.auth(token)
        )
        assert own.status_code == 503  # allowed through; nothing deployed yet

    with_api(scenario)
