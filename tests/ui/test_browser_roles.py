"""The dashboard in Debian's Chromium as three people: a server admin, a contributor and a viewer
(users and projects made through the server's ``registry.people``), against the real server on
uvicorn with a model deployed twice through the REST API (so a rollback control can exist).

What each sees and can do: the admin sees every project's models and can switch between them;
the contributor sees only its project's models and the rollback control; the viewer sees no
rollback or call control, and a rollback posted anyway (with a valid CSRF token) answers 403. A
wrong password shows the sign-in failure message; disabling the viewer ends its session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHROMIUM_ARGS, SCREENSHOTS, Running, serve_in_thread, watch
from .test_browser import _deploy

pytestmark = pytest.mark.slow

PASSWORDS = {"admin": "admin-password-1", "carol": "carol-password-1", "vic": "vic-password-1"}


@pytest.fixture
def served(modelyard_home: Path) -> Iterator[Running]:
    with serve_in_thread(modelyard_home) as run:
        yield run


def _cast(run: Running, tmp_path: Path) -> dict[str, Any]:
    """carol (contributor) and vic (viewer) in the default project, where ``churn`` is deployed
    twice; project ``side`` (the admin's) holds ``side-model``, which neither may see."""
    registry = run.app.state.services.registry
    people = registry.people
    people.set_password("admin", PASSWORDS["admin"])
    default = people.default_project()
    for name, role in (("carol", "contributor"), ("vic", "viewer")):
        people.create_user(name, password=PASSWORDS[name])
        people.set_collaborator(default.crn, "user", name, role)
    side = people.create_project("side", owner="admin")
    registry.create_model("side-model", project_crn=side.crn)
    project = tmp_path / "churn"
    project.mkdir()
    first = _deploy(run, project, 1)
    _deploy(run, project, 2)
    return {"side": side.crn, "first_build": first["build"]["crn"]}


def _sign_in(page: Any, run: Running, name: str, password: str) -> None:
    page.goto(run.url + "/ui/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#password-form button")
    page.wait_for_url(run.url + "/ui/")


def _sign_out(page: Any) -> None:
    page.click(".signout button")
    page.wait_for_url("**/ui/login")


def _model_names(page: Any) -> list[str]:
    page.locator("#models tbody tr[data-state]").first.wait_for()
    names = page.locator("#models tbody tr[data-state] th").all_inner_texts()
    return sorted(n.strip() for n in names)


def test_three_roles_in_chromium(served: Running, chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    data = _cast(served, tmp_path)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            watch(page, problems)

            # A wrong password: the failure message, still on the sign-in page.
            page.goto(served.url + "/ui/login")
            page.fill("#name", "carol")
            page.fill("#password", "not-the-password")
            page.click("#password-form button")
            page.locator("#login-error").wait_for()
            assert "password" in page.inner_text("#login-error")
            assert "/ui/login" in page.url
            page.screenshot(path=str(SCREENSHOTS / "login-failed.png"))

            # The server admin: every project, a switcher to narrow it, rollback controls.
            _sign_in(page, served, "admin", PASSWORDS["admin"])
            assert _model_names(page) == ["churn", "side-model"]
            assert page.inner_text("#who") == "admin"
            with page.expect_navigation():
                page.select_option("#project-switch", data["side"])  # app.js submits on change
            assert page.url == served.url + "/ui/"
            assert _model_names(page) == ["side-model"]
            first = page.inner_text("#refreshed")  # the fetch() refresh keeps to the project
            page.wait_for_function(
                "(t) => document.getElementById('refreshed').textContent !== t", arg=first
            )
            assert _model_names(page) == ["side-model"]
            page.goto(served.url + "/ui/jobs")  # the choice stays with the session
            assert page.locator("#project-switch").input_value() == data["side"]
            with page.expect_navigation():
                page.select_option("#project-switch", "all")
            assert page.url == served.url + "/ui/jobs"
            page.goto(served.url + "/ui/models/churn")
            assert page.locator("form.rollback button").count() == 1
            page.goto(served.url + "/ui/audit")
            page.locator("#audit td", has_text="ui.sign_in").first.wait_for()
            page.screenshot(path=str(SCREENSHOTS / "audit.png"), full_page=True)
            _sign_out(page)

            # The contributor: its project's model only, and the rollback control.
            _sign_in(page, served, "carol", PASSWORDS["carol"])
            assert _model_names(page) == ["churn"]
            assert page.locator("#project-switch option").count() == 1
            page.goto(served.url + "/ui/models/churn")
            assert page.locator("form.rollback button").count() == 1
            assert page.locator("#try-form button").count() == 1
            hidden = page.goto(served.url + "/ui/models/side-model")
            assert hidden is not None and hidden.status == 404
            page.goto(served.url + "/ui/secrets")
            page.fill("#secret-name", "API_TOKEN")
            page.fill("#secret-value", "value-never-shown")
            page.click("#set-secret button")
            page.wait_for_url("**/ui/secrets?*notice=secret-set")
            assert "API_TOKEN" in page.inner_text("#secrets")
            assert "value-never-shown" not in page.content()
            _sign_out(page)

            # The viewer: no rollback or call control; posting a rollback anyway is refused.
            _sign_in(page, served, "vic", PASSWORDS["vic"])
            assert _model_names(page) == ["churn"]
            page.goto(served.url + "/ui/models/churn")
            assert page.locator("form.rollback").count() == 0
            assert page.locator("#try-form button").count() == 0
            page.screenshot(path=str(SCREENSHOTS / "model-viewer.png"), full_page=True)
            csrf = page.get_attribute('meta[name="csrf-token"]', "content")
            answer = page.request.post(
                served.url + "/ui/models/churn/rollback",
                form={"csrf": csrf or "", "build": data["first_build"]},
            )
            assert answer.status == 403, answer.text()
            assert "viewer" in answer.text() and "contributor" in answer.text()
            page.goto(served.url + "/ui/project")
            assert page.locator("#add-collaborator").count() == 0
            assert "carol" in page.inner_text("#collaborators")
            page.goto(served.url + "/ui/secrets")
            assert "API_TOKEN" in page.inner_text("#secrets")
            assert page.locator("#set-secret").count() == 0

            # Disabling the viewer ends the session: the next page is the sign-in form.
            served.app.state.services.registry.people.set_disabled("vic", True)
            deadline = time.monotonic() + 5
            page.goto(served.url + "/ui/")
            while "/ui/login" not in page.url:
                assert time.monotonic() < deadline, "the disabled user's session still works"
                time.sleep(0.3)
                page.goto(served.url + "/ui/")
        finally:
            browser.close()
    provoked = ("status of 401", "status of 403", "status of 404")  # the refusals asked for above
    assert [p for p in problems if not any(code in p for code in provoked)] == []
