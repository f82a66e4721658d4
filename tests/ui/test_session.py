"""Sign-in, the session cookie, CSRF and the pages' access rules, over the real app."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from modelyard.registry import DEFAULT_TTL_S

from .conftest import Ui


def test_sign_in_sets_a_strict_http_only_cookie_and_pages_need_it(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        away = await ui.client.get("/ui/keys")
        assert away.status_code == 303
        assert away.headers["location"] == "/ui/login?next=%2Fui%2Fkeys"
        page = await ui.client.get("/ui/login")
        assert page.status_code == 200 and 'type="password"' in page.text
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        wrong = await ui.client.post(
            "/ui/login", data={"csrf": token.group(1), "api_key": "mk_wrong"}
        )
        assert wrong.status_code == 401 and "modelyard_session" not in ui.client.cookies
        token = re.search(r'name="csrf" value="([^"]+)"', wrong.text)  # a fresh form token
        assert token is not None
        answer = await ui.client.post(
            "/ui/login",
            data={"csrf": token.group(1), "api_key": ui.admin, "next": "https://evil.test/"},
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/"  # never another site
        cookie = next(
            v for k, v in answer.headers.multi_items() if k == "set-cookie" and "session" in v
        )
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert ui.admin not in cookie  # only the random session id
        overview = await ui.client.get("/ui/")
        assert overview.status_code == 200 and "<h1>Models</h1>" in overview.text
        assert overview.headers["x-frame-options"] == "DENY"

    with_ui(scenario)


def test_login_form_needs_its_csrf_cookie(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        answer = await ui.client.post("/ui/login", data={"csrf": "forged", "api_key": ui.admin})
        assert answer.status_code == 403 and "expired" in answer.text

    with_ui(scenario)


def test_state_changes_need_the_csrf_token(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        csrf = await ui.sign_in()
        forged = await ui.client.post("/ui/keys", data={"name": "x", "csrf": "nope"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        made = await ui.client.post("/ui/keys", data={"name": "ci", "role": "user", "csrf": csrf})
        assert made.status_code == 201
        token = re.search(
            r'id="new-token" class="mono" readonly size="60" value="([^"]+)"', made.text
        )
        assert token is not None
        listed = await ui.client.get("/ui/keys")
        assert token.group(1) not in listed.text  # shown once, then never again
        keys = ui.services.registry.list_api_keys()
        new = next(k for k in keys if k.name == "ci")
        # REST through the cookie: reads work, a change without the header is refused.
        refused = await ui.client.delete(f"/api/v1/keys/{new.id}")
        assert refused.status_code == 403
        revoked = await ui.client.post(f"/ui/keys/{new.id}/revoke", data={"csrf": csrf})
        assert revoked.status_code == 303
        assert next(k for k in ui.services.registry.list_api_keys() if k.id == new.id).revoked_ms
        listed_api = await ui.client.get("/api/v1/keys")
        assert listed_api.status_code == 200
        # The test form's call: the CSRF header is required, then the model must exist.
        no_token = await ui.client.post("/ui/models/churn/try", json={"x": 1})
        assert no_token.status_code == 403 and "CSRF" in no_token.text
        unknown = await ui.client.post(
            "/ui/models/churn/try", json={"x": 1}, headers={"X-CSRF-Token": csrf}
        )
        assert unknown.status_code == 404 and "churn" in unknown.text
        via_header = await ui.client.delete(
            f"/api/v1/keys/{new.id}", headers={"X-CSRF-Token": csrf}
        )
        assert via_header.status_code == 200

    with_ui(scenario)


def test_sign_out_and_revoked_key_end_the_session(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        _, user_token = ui.services.registry.create_api_key("viewer", role="user", user="admin")
        csrf = await ui.sign_in(user_token)
        assert (await ui.client.get("/ui/")).status_code == 200
        forbidden = await ui.client.get("/ui/keys")  # a user key may not manage keys
        assert forbidden.status_code == 403 and "role" in forbidden.text
        out = await ui.client.post("/ui/logout", data={"csrf": csrf})
        assert out.status_code == 303
        assert (await ui.client.get("/ui/")).status_code == 303
        assert (await ui.client.get("/api/v1/overview")).status_code == 401
        await ui.sign_in(user_token)
        key = next(k for k in ui.services.registry.list_api_keys() if k.name == "viewer")
        ui.services.registry.revoke_api_key(key.id)
        # The session re-reads its key at most every DEFAULT_TTL_S (the registry's own TTL).
        deadline = time.monotonic() + DEFAULT_TTL_S + 1
        while (await ui.client.get("/ui/")).status_code != 303:
            assert time.monotonic() < deadline, "the revoked key still opens the dashboard"
            await asyncio.sleep(0.2)


def test_a_run_key_is_refused_at_sign_in(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        _, run_token = ui.services.registry.create_api_key("job", role="run")
        page = await ui.client.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        answer = await ui.client.post(
            "/ui/login", data={"csrf": token.group(1), "api_key": run_token}
        )
        assert answer.status_code == 403 and "modelyard_session" not in ui.client.cookies
        assert "&#39;run&#39;" in answer.text and "cannot use the dashboard" in answer.text

    with_ui(scenario)


def test_cookie_calls_reuse_the_session_key_for_the_registry_ttl(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        await ui.sign_in()
        registry = ui.services.registry
        reads = 0
        original = registry.list_api_keys

        def counted(user_id: str | None = None) -> Any:  # the real method, counted
            nonlocal reads
            reads += 1
            return original(user_id)

        registry.list_api_keys = counted  # type: ignore[method-assign]
        try:
            for _ in range(10):
                assert (await ui.client.get("/api/v1/overview")).status_code == 200
        finally:
            registry.list_api_keys = original  # type: ignore[method-assign]
        assert reads <= 1, reads  # ten calls within the TTL: at most one read of the keys

    with_ui(scenario)

    with_ui(scenario)


def test_static_files_are_a_fixed_table(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        plotly = await ui.client.get("/ui/static/plotly.min.js")
        assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
        assert (await ui.client.get("/ui/static/app.js")).status_code == 200
        for name in ("..%2Fsession.py", "routes.py", "%2Fetc%2Fpasswd"):
            assert (await ui.client.get(f"/ui/static/{name}")).status_code == 404

    with_ui(scenario)


def test_every_dashboard_route_but_sign_in_and_static_needs_a_session(with_ui: Any) -> None:
    async def scenario(ui: Ui) -> None:
        from modelyard.ui.routes import RULES, router

        routes = [(r.path, sorted(r.methods - {"HEAD"})) for r in router.routes]  # type: ignore[attr-defined]
        assert len(routes) >= 10
        listed = {(method, path) for path, methods in routes for method in methods}
        assert listed == set(RULES), listed ^ set(RULES)  # every route has a rule, no stale one
        for path, methods in routes:
            for method in methods:
                assert (RULES[method, path] is None) == (
                    path in ("/", "/ui/login", "/ui/logout", "/ui/static/{name}")
                ), (method, path)
        for path, methods in routes:
            concrete = path.replace("{name}", "m").replace("{key_id}", "k")
            if path in ("/", "/ui/login", "/ui/static/{name}"):
                continue
            for method in methods:
                answer = await ui.client.request(method, concrete)
                if path == "/ui/models/{name}/try":  # a fetch() endpoint: JSON, not a redirect
                    assert answer.status_code == 401, (method, path)
                else:
                    assert answer.status_code == 303, (method, path, answer.text)
                    assert answer.headers["location"].startswith("/ui/login"), path
        assert (await ui.client.get("/")).headers["location"] == "/ui/"

    with_ui(scenario)
