"""Password sign-in, the project switcher and the people pages (project, audit, secrets) over the
real app in-process: users, projects and models made through the server's own registry.

Cast: ``pam`` owns project ``alpha`` (its admin), ``carol`` is a contributor and ``vic`` a viewer
there; ``beta`` is owned by ``admin`` (a server admin) and only ``admin`` sees it. Each project
has one model (``a-model``, ``b-model``).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

from modelyard.registry import DEFAULT_TTL_S, Registry

from .conftest import Ui, login_form_token

PASSWORDS = {
    "admin": "admin-password-1",
    "pam": "pam-password-1",
    "carol": "carol-password-1",
    "vic": "vic-password-1",
}


@dataclass
class Cast:
    alpha: str  # project CRNs
    beta: str


def cast(registry: Registry) -> Cast:
    """The people, projects and models of every test here, made through the registry."""
    people = registry.people
    people.set_password("admin", PASSWORDS["admin"])
    for name in ("pam", "carol", "vic"):
        people.create_user(name, password=PASSWORDS[name])
    alpha = people.create_project("alpha", owner="pam")
    beta = people.create_project("beta", owner="admin")
    people.set_collaborator(alpha.crn, "user", "carol", "contributor")
    people.set_collaborator(alpha.crn, "user", "vic", "viewer")
    registry.create_model("a-model", project_crn=alpha.crn)
    registry.create_model("b-model", project_crn=beta.crn)
    return Cast(alpha.crn, beta.crn)


def test_password_sign_in_its_failure_message_and_the_audit(
    with_ui: Any, database: dict[str, Any]
) -> None:
    async def scenario(ui: Ui) -> None:
        cast(ui.services.registry)
        wrong = await ui.sign_in_password("carol", "not-her-password")
        assert wrong.status_code == 401 and "modelyard_session" not in ui.client.cookies
        assert 'id="login-error"' in wrong.text
        assert 'value="carol"' in wrong.text  # the name stays filled in
        unknown = await ui.sign_in_password("nobody", "whatever-1")
        assert unknown.status_code == 401
        error = re.compile(r'id="login-error">([^<]+)<')
        # One message for an unknown user and a wrong password: names do not leak.
        assert error.search(wrong.text).group(1) == error.search(unknown.text).group(1)  # type: ignore[union-attr]
        right = await ui.sign_in_password("carol", PASSWORDS["carol"])
        assert right.status_code == 303 and right.headers["location"] == "/ui/"
        overview = await ui.client.get("/ui/")
        assert overview.status_code == 200 and '<span class="who" id="who">carol</span>' in (
            overview.text
        )
        entries = ui.services.registry.audit.list(actor="carol")
        outcomes = [(e.action, e.outcome, e.address) for e in entries]
        assert ("ui.sign_in", "ok", "127.0.0.1") in outcomes, outcomes
        assert ("ui.sign_in", "denied", "127.0.0.1") in outcomes, outcomes
        for entry in ui.services.registry.audit.list():
            assert PASSWORDS["carol"] not in repr(entry) and "not-her-password" not in repr(entry)
        # The API key path still works, and is audited under the key's user.
        await ui.sign_in()
        assert any(e.outcome == "ok" for e in ui.services.registry.audit.list(actor="admin"))

    with_ui(scenario, **database)


def test_failed_sign_ins_are_rate_limited_per_name_and_address(
    with_ui: Any, database: dict[str, Any]
) -> None:
    async def scenario(ui: Ui) -> None:
        cast(ui.services.registry)
        for _ in range(10):
            assert (await ui.sign_in_password("vic", "wrong-guess")).status_code == 401
        limited = await ui.sign_in_password("vic", PASSWORDS["vic"])  # even the right one
        assert limited.status_code == 429, limited.text
        assert "too many failed sign-ins for &#39;vic&#39;" in limited.text
        assert int(limited.headers["retry-after"]) >= 1
        other = await ui.sign_in_password("carol", PASSWORDS["carol"])  # another name: fine
        assert other.status_code == 303

    with_ui(scenario, **database)


def test_a_disabled_users_session_ends(with_ui: Any, database: dict[str, Any]) -> None:
    async def scenario(ui: Ui) -> None:
        cast(ui.services.registry)
        assert (await ui.sign_in_password("carol", PASSWORDS["carol"])).status_code == 303
        assert (await ui.client.get("/ui/")).status_code == 200
        assert (await ui.client.get("/api/v1/overview")).status_code == 200
        ui.services.registry.people.set_disabled("carol", True)
        deadline = time.monotonic() + DEFAULT_TTL_S + 1
        while (await ui.client.get("/ui/")).status_code != 303:
            assert time.monotonic() < deadline, "the disabled user's session still opens pages"
            await asyncio.sleep(0.2)
        assert (await ui.client.get("/api/v1/overview")).status_code == 401
        ui.services.registry.people.set_disabled("carol", False)
        assert (await ui.client.get("/ui/")).status_code == 303  # ended, not paused
        refused = await ui.sign_in_password("carol", PASSWORDS["carol"])
        assert refused.status_code == 303  # enabled again: a new sign-in works

    with_ui(scenario, **database)


def test_each_caller_sees_only_its_projects(with_ui: Any, database: dict[str, Any]) -> None:
    async def scenario(ui: Ui) -> None:
        crns = cast(ui.services.registry)
        async with ui.visitor("carol", PASSWORDS["carol"]) as carol:
            overview = (await carol.client.get("/ui/")).text
            assert "a-model" in overview and "b-model" not in overview
            assert "All projects" not in overview  # one project: no "all" choice
            unknown = await carol.client.get("/ui/models/no-such-model")
            hidden = await carol.client.get("/ui/models/b-model")
            assert unknown.status_code == hidden.status_code == 404
            assert unknown.text.replace("no-such-model", "X") == hidden.text.replace(
                "b-model", "X"
            )  # the same page: existence does not leak
            assert (await carol.client.get("/ui/models/a-model")).status_code == 200
            api = (await carol.client.get("/api/v1/overview")).json()
            assert [m["name"] for m in api["models"]] == ["a-model"]
        await ui.sign_in_password("admin", PASSWORDS["admin"])
        every = (await ui.client.get("/ui/?project=all")).text
        assert "a-model" in every and "b-model" in every and "All projects" in every
        alpha = (await ui.client.get(f"/ui/?project={crns.alpha}")).text
        assert "a-model" in alpha and "b-model" not in alpha
        assert f'<meta name="modelyard-project" content="{crns.alpha}">' in alpha
        jobs = await ui.client.get("/ui/jobs")  # the choice stays with the session
        assert f'<option value="{crns.alpha}" selected>' in jobs.text
        strange = await ui.client.get("/ui/?project=nobody/nothing")
        assert strange.status_code == 404 and "nobody/nothing" in strange.text
        assert "pam/alpha" in strange.text  # names what would be accepted

    with_ui(scenario, **database)


def test_a_viewer_gets_no_controls_and_403_when_posting(
    with_ui: Any, database: dict[str, Any]
) -> None:
    async def scenario(ui: Ui) -> None:
        crns = cast(ui.services.registry)
        async with ui.visitor("vic", PASSWORDS["vic"]) as vic:
            model = await vic.client.get("/ui/models/a-model")
            assert model.status_code == 200
            assert "form.rollback" not in model.text and 'id="no-call"' in model.text
            rollback = await vic.client.post(
                "/ui/models/a-model/rollback", data={"csrf": vic.csrf, "build": "x"}
            )
            assert rollback.status_code == 403
            assert "viewer" in rollback.text and "contributor" in rollback.text
            tried = await vic.client.post(
                "/ui/models/a-model/try", json={"x": 1}, headers={"X-CSRF-Token": vic.csrf}
            )
            assert tried.status_code == 403 and "operator" in tried.text
            project = await vic.client.get("/ui/project")
            assert 'id="add-collaborator"' not in project.text and "carol" in project.text
            added = await vic.client.post(
                "/ui/project/collaborators",
                data={"csrf": vic.csrf, "project": crns.alpha, "action": "set", "kind": "user",
                      "name": "vic", "role": "admin"},
            )  # fmt: skip
            assert added.status_code == 403
            secret = await vic.client.post(
                "/ui/secrets",
                data={"csrf": vic.csrf, "project": crns.alpha, "action": "set",
                      "name": "TOKEN", "value": "v"},
            )  # fmt: skip
            assert secret.status_code == 403
            assert (await vic.client.get("/ui/audit")).status_code == 403
            assert (await vic.client.get("/ui/keys")).status_code == 403
            elsewhere = await vic.client.post(
                "/ui/secrets",
                data={"csrf": vic.csrf, "project": crns.beta, "action": "set",
                      "name": "TOKEN", "value": "v"},
            )  # fmt: skip
            assert elsewhere.status_code == 404  # beta: no role there, so unknown

    with_ui(scenario, **database)


def test_project_admins_manage_collaborators(with_ui: Any, database: dict[str, Any]) -> None:
    async def scenario(ui: Ui) -> None:
        crns = cast(ui.services.registry)
        ui.services.registry.people.create_user("dave", password="dave-password-1")
        people = ui.services.registry.people

        def role_of(name: str) -> str | None:
            found = [c for c in people.collaborators(crns.alpha) if c.name == name]
            return found[0].role.value if found else None

        async with ui.visitor("pam", PASSWORDS["pam"]) as pam:
            page = await pam.client.get("/ui/project")
            assert 'id="add-collaborator"' in page.text and "pam/alpha" in page.text
            fields = {"csrf": pam.csrf, "project": crns.alpha, "kind": "user"}
            done = await pam.client.post(
                "/ui/project/collaborators",
                data={**fields, "action": "set", "name": "dave", "role": "viewer"},
            )
            assert done.status_code == 303 and "collaborator-set" in done.headers["location"]
            assert role_of("dave") == "viewer"
            await pam.client.post(
                "/ui/project/collaborators",
                data={**fields, "action": "set", "name": "dave", "role": "operator"},
            )
            assert role_of("dave") == "operator"
            gone = await pam.client.post(
                "/ui/project/collaborators", data={**fields, "action": "remove", "name": "dave"}
            )
            assert gone.status_code == 303 and role_of("dave") is None
            wrong = await pam.client.post(
                "/ui/project/collaborators",
                data={**fields, "action": "set", "name": "dave", "role": "boss"},
            )
            assert wrong.status_code == 400 and "boss" in wrong.text and "viewer" in wrong.text
            forged = await pam.client.post(
                "/ui/project/collaborators",
                data={**fields, "csrf": "forged", "action": "remove", "name": "carol"},
            )
            assert forged.status_code == 403 and role_of("carol") == "contributor"
        # The audit log (written after each response) names pam and the project acted in.
        deadline = time.monotonic() + 10
        while True:
            mine = ui.services.registry.audit.list(project_crn=crns.alpha, actor="pam")
            if len([e for e in mine if e.outcome == "ok"]) >= 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert len([e for e in mine if e.outcome == "ok"]) >= 3, mine
        async with ui.visitor("carol", PASSWORDS["carol"]) as carol:  # a contributor: no
            refused = await carol.client.post(
                "/ui/project/collaborators",
                data={"csrf": carol.csrf, "project": crns.alpha, "kind": "user",
                      "action": "remove", "name": "vic"},
            )  # fmt: skip
            assert refused.status_code == 403 and "admin" in refused.text

    with_ui(scenario, **database)


def test_audit_page_shows_what_each_admin_may_see(with_ui: Any, database: dict[str, Any]) -> None:
    async def scenario(ui: Ui) -> None:
        crns = cast(ui.services.registry)
        audit = ui.services.registry.audit
        audit.record("carol", "models.deploy", object="a-model", project_crn=crns.alpha)
        audit.record("admin", "models.scale", object="b-model", project_crn=crns.beta)
        async with ui.visitor("pam", PASSWORDS["pam"]) as pam:
            text = (await pam.client.get("/ui/audit")).text
            assert "models.deploy" in text and "models.scale" not in text
            assert "ui.sign_in" not in text  # server-wide entries: server admins only
            by_user = (await pam.client.get("/ui/audit?user=admin")).text
            assert "models.deploy" not in by_user
            bad = await pam.client.get("/ui/audit?since=yesterday")
            assert bad.status_code == 400 and "24h" in bad.text
            other = await pam.client.get(f"/ui/audit?project={crns.beta}")
            assert other.status_code == 404  # beta: no role there
        async with ui.visitor("carol", PASSWORDS["carol"]) as carol:
            refused = await carol.client.get("/ui/audit")
            assert refused.status_code == 403 and "admin" in refused.text
        await ui.sign_in_password("admin", PASSWORDS["admin"])
        everything = (await ui.client.get("/ui/audit?project=all")).text
        for action in ("models.deploy", "models.scale", "ui.sign_in"):
            assert action in everything, action
        only_beta = (await ui.client.get(f"/ui/audit?project={crns.beta}")).text
        assert "models.scale" in only_beta and "models.deploy" not in only_beta

    with_ui(scenario, **database)


def test_secrets_page_never_shows_a_value(with_ui: Any, database: dict[str, Any]) -> None:
    async def scenario(ui: Ui) -> None:
        crns = cast(ui.services.registry)
        value = "s3cr3t-value-that-must-not-show"
        async with ui.visitor("carol", PASSWORDS["carol"]) as carol:
            page = await carol.client.get("/ui/secrets")
            assert 'id="secret-value" name="value" type="password"' in page.text
            fields = {"csrf": carol.csrf, "project": crns.alpha}
            done = await carol.client.post(
                "/ui/secrets", data={**fields, "action": "set", "name": "DB_TOKEN", "value": value}
            )
            assert done.status_code == 303, done.text
            listed = await carol.client.get(done.headers["location"])
            assert "DB_TOKEN" in listed.text and "carol" in listed.text
            assert value not in listed.text and "The secret was saved" in listed.text
            bad = await carol.client.post(
                "/ui/secrets", data={**fields, "action": "set", "name": "bad name", "value": value}
            )
            assert bad.status_code == 400 and value not in bad.text
        async with ui.visitor("vic", PASSWORDS["vic"]) as vic:
            seen = (await vic.client.get("/ui/secrets")).text
            assert "DB_TOKEN" in seen and 'id="set-secret"' not in seen and value not in seen
        async with ui.visitor("carol", PASSWORDS["carol"]) as carol:
            gone = await carol.client.post(
                "/ui/secrets",
                data={"csrf": carol.csrf, "project": crns.alpha, "action": "delete",
                      "name": "DB_TOKEN"},
            )  # fmt: skip
            assert gone.status_code == 303
            assert ui.services.registry.secrets.list(crns.alpha) == []
        for entry in ui.services.registry.audit.list():
            assert value not in repr(entry)

    with_ui(scenario, **database)


def test_the_login_form_still_refuses_a_forged_token(
    with_ui: Any, database: dict[str, Any]
) -> None:
    async def scenario(ui: Ui) -> None:
        cast(ui.services.registry)
        await login_form_token(ui.client)
        answer = await ui.client.post(
            "/ui/login", data={"csrf": "forged", "name": "carol", "password": PASSWORDS["carol"]}
        )
        assert answer.status_code == 403 and "modelyard_session" not in ui.client.cookies

    with_ui(scenario, **database)


def test_a_narrowed_key_session_and_the_switchers_redirect(
    with_ui: Any, database: dict[str, Any]
) -> None:
    async def scenario(ui: Ui) -> None:
        crns = cast(ui.services.registry)
        _, token = ui.services.registry.create_api_key(
            "beta-only", role="user", user="admin", project=crns.beta, project_role="viewer"
        )
        csrf = await ui.sign_in(token)
        overview = await ui.client.get("/ui/")
        assert "b-model" in overview.text and "a-model" not in overview.text
        assert "admin (key beta-only)" in overview.text
        model = await ui.client.get("/ui/models/b-model")
        assert model.status_code == 200 and "form.rollback" not in model.text
        assert (await ui.client.get("/ui/keys")).status_code == 403  # never a server admin
        assert (await ui.client.get("/ui/models/a-model")).status_code == 404
        refused = await ui.client.post(
            "/ui/secrets",
            data={"csrf": csrf, "project": crns.beta, "action": "set", "name": "T", "value": "v"},
        )
        assert refused.status_code == 403 and "narrowed to viewer" in refused.text
        away = await ui.client.get("/ui/switch", params={"project": "all", "next": "//evil.test/"})
        assert away.status_code == 303 and away.headers["location"] == "/ui/"
        back = await ui.client.get("/ui/switch", params={"project": "all", "next": "/ui/jobs"})
        assert back.headers["location"] == "/ui/jobs"

    with_ui(scenario, **database)
