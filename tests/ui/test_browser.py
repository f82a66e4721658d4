"""The dashboard in a real headless Chromium (Debian's, through Playwright) against the real
server app on uvicorn in a thread, with real replica processes, a real SQLite store and data made
through the REST API: two builds, calls, a delayed label, a monitor aggregate.

One browser walk covers: sign in, every page, the test form, search by uuid with delayed
metrics, the charts, rollback, creating and revoking a key, keyboard focus reaching the main
controls, and no console errors anywhere. Screenshots go to ``test-screenshots/ui/`` (ignored by
git) for a person to look at.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.monitors import MonitorSpec, run_monitor

from .conftest import CHROMIUM_ARGS, SCREENSHOTS, Running, focus_reaches, serve_in_thread, watch

pytestmark = pytest.mark.slow

PREDICT = """
import modelyard

@modelyard.model_metrics
def predict(args):
    modelyard.track_metric("x", args["x"])
    modelyard.track_metric("score", args["x"] / 20)
    return {"double": args["x"] * 2, "version": VERSION}

VERSION = %d
"""


@pytest.fixture
def running(modelyard_home: Path) -> Iterator[Running]:
    """The server app on uvicorn in a thread (one-second tech intervals for the charts)."""
    with serve_in_thread(modelyard_home, tech_interval_s=1.0) as run:
        yield run


def _deploy(run: Running, project: Path, version: int) -> dict[str, Any]:
    (project / "predict.py").write_text(textwrap.dedent(PREDICT % version))
    answer = httpx.post(
        f"{run.url}/api/v1/models/churn/deploy",
        json={"project": str(project), "example": {"x": 3}, "replicas": 1},
        headers=run.auth(),
        timeout=300,
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _data(run: Running, tmp_path: Path) -> dict[str, Any]:
    project = tmp_path / "churn"
    project.mkdir()
    first = _deploy(run, project, 1)
    second = _deploy(run, project, 2)
    uuids = []
    for x in range(12):
        answer = httpx.post(
            f"{run.url}/api/v1/models/churn/predict", json={"x": x}, headers=run.auth()
        )
        assert answer.status_code == 200, answer.text
        uuids.append(answer.json()["uuid"])
    for i, uuid in enumerate(uuids[:8]):  # ground truth for some: both classes
        httpx.post(
            f"{run.url}/api/v1/metrics/delayed",
            json={"predictionUuid": uuid, "metrics": {"label": int(i >= 4)}, "source": "crm"},
            headers=run.auth(),
        ).raise_for_status()
    deployment = second["deployment"]["crn"]
    # A training sample whose x sits far from the calls' x: the monitor flags drift on x.
    httpx.post(
        f"{run.url}/api/v1/references",
        json={
            "deployment": deployment,
            "name": "training",
            "columns": {
                "x": [20 + (i % 20) for i in range(400)],
                "score": [(20 + (i % 20)) / 40 for i in range(400)],
            },
        },
        headers=run.auth(),
    ).raise_for_status()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "prepare.py").write_text(
        "import time\nprint('preparing', flush=True)\ntime.sleep(1)\nprint('prepared')\n"
    )
    (jobs / "score.py").write_text("print('scoring')\n")
    (jobs / "slow.py").write_text("import time\nprint('slow start', flush=True)\ntime.sleep(120)\n")
    for job in (
        {"name": "prepare", "script": "prepare.py", "manual": True},
        {"name": "score", "script": "score.py", "after": "prepare"},
        {"name": "slow", "script": "slow.py", "manual": True},
    ):
        made = httpx.post(
            f"{run.url}/api/v1/jobs", json={**job, "project": str(jobs)}, headers=run.auth()
        )
        assert made.status_code == 201, made.text
    spec = MonitorSpec.from_dict({
        "name": "churn", "deployment": deployment, "reference": {"stored": "training"},
        "features": ["x"], "prediction": "score", "label": "label", "window": "1h",
        "alerts": ["drift.flagged > 0"],
        "min_labels": 1, "min_predictions": 1,  # a dozen calls, 8 labels: every window counts
    })  # fmt: skip
    now = time.time_ns() // 1_000_000
    store = run.app.state.services.store
    # As if this hour were over: an open window is stored partial and fires no alert (issue 11).
    results = run_monitor(
        spec, window=(now - 3_600_000, now + 3_600_000), store=store, now_ms=now + 7_200_000
    )
    assert sum(r.metrics["n"] for r in results) == 12
    return {"first": first, "second": second, "uuids": uuids, "deployment": deployment}


def test_dashboard_in_chromium(running: Running, chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    data = _data(running, tmp_path)
    time.sleep(2.5)  # let the gateway write a few one-second tech intervals
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)  # the machine is shared: waits, not sleeps
            watch(page, problems)

            # Sign in (any page sends the browser to the sign-in form first).
            page.goto(running.url + "/ui/models/churn")
            assert page.url.startswith(running.url + "/ui/login")
            page.screenshot(path=str(SCREENSHOTS / "login.png"))
            focus_reaches(page, ["#api_key", "button[type=submit]"])
            page.fill("#api_key", running.admin)
            page.keyboard.press("Enter")
            page.wait_for_url(running.url + "/ui/models/churn")

            # Overview: the model's row with its traffic and monitor results.
            page.goto(running.url + "/ui/")
            row = page.locator("#models tbody tr", has_text="churn")
            row.wait_for()
            cells = row.locator("td").all_inner_texts()  # the model's name is the row's th
            assert "Alerting" in cells[0] and "deployment active" in cells[0], cells
            assert cells[1] == "1 / 1", cells
            assert "roc_auc 1" in cells[5] and cells[6] == "⚑ x", cells  # the monitor's window
            assert cells[7].startswith("✖ 1 firing: drift.flagged > 0 ("), cells
            assert not cells[2].startswith("–"), cells  # requests/s from the tech intervals
            page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
            focus_reaches(page, ["nav a[href='/ui/metrics']", ".signout button", "#models a"])

            # Model page: replicas, charts, the test form, search by uuid, build log.
            page.click("#models a")
            page.wait_for_url(running.url + "/ui/models/churn")
            page.locator("#replicas tbody tr td", has_text="healthy").first.wait_for()
            page.locator("#chart-rps .main-svg").first.wait_for()
            page.locator("#chart-latency .main-svg").first.wait_for()
            assert "gateway intervals" in page.inner_text("#tech-resolution")
            page.click("#try-form button")
            page.wait_for_function(
                "() => document.getElementById('try-output').textContent.includes('double')"
            )
            reply = page.inner_text("#try-output")
            assert '"double": 6' in reply and '"version": 2' in reply, reply
            page.fill("#search-uuid", data["uuids"][3])
            page.click("#search-form button")
            detail = page.locator("#prediction-detail")
            detail.locator("td", has_text="crm").wait_for()
            assert "label" in detail.inner_text() and '"x": 3' in detail.inner_text()
            page.locator("#predictions tbody button").first.wait_for()
            assert "smoke test" in page.inner_text("pre.log")  # the active build's log
            page.screenshot(path=str(SCREENSHOTS / "model.png"), full_page=True)
            focus_reaches(
                page, ["#range", "form.rollback button", "#try-input", "#search-uuid"], 120
            )

            # Roll back to the first build with the button.
            first_build = data["first"]["build"]["crn"]
            page.click("form.rollback button")
            page.wait_for_url("**/ui/models/churn?notice=rolled-back", timeout=120_000)
            assert "Rolled back" in page.inner_text(".notice")
            shown = httpx.get(
                f"{running.url}/api/v1/models/churn", headers=running.auth(), timeout=30
            ).json()
            assert shown["active"]["build_crn"] == first_build
            page.click("#try-form button")
            page.wait_for_function(
                "() => document.getElementById('try-output').textContent.includes('version')"
            )
            assert '"version": 1' in page.inner_text("#try-output")

            # Metrics explorer: a tracked metric, raw points, resolution named.
            page.goto(
                running.url + "/ui/metrics?deployment=" + data["deployment"] + "&metric=score"
            )
            page.locator("#chart-metric .main-svg").first.wait_for()
            page.wait_for_function(
                "() => document.getElementById('resolution').textContent.includes('raw')"
            )
            page.screenshot(path=str(SCREENSHOTS / "metrics.png"), full_page=True)
            focus_reaches(page, ["#deployment", "#metric", "#range", "#explore button"])
            page.fill("#metric", "roc_auc")
            page.click("#explore button")
            page.wait_for_function(
                "() => document.getElementById('resolution').textContent.includes('aggregates')"
            )

            # Drift: the heatmap of the monitor's window, a cell's two distributions.
            page.goto(running.url + "/ui/drift?deployment=" + data["deployment"])
            page.locator("#chart-heatmap .main-svg").first.wait_for()
            assert "1 features over" in page.inner_text("#drift-status")
            focus_reaches(page, ["#deployment", "#method", "#range", "#cell"])
            page.select_option("#cell", index=1)
            page.wait_for_function(
                "() => document.getElementById('cell-status').textContent.includes('exact')"
            )
            page.locator("#chart-current .main-svg").first.wait_for()
            page.screenshot(path=str(SCREENSHOTS / "drift.png"), full_page=True)

            # Jobs: schedule and pipeline, run now with the live log, history, cancel.
            page.click("nav a[href='/ui/jobs']")
            page.locator("#jobs td", has_text="after prepare succeeds").wait_for()
            page.locator("#chart-pipeline .main-svg").first.wait_for()
            focus_reaches(page, ["button[aria-label='Run prepare now']", "#job-select"])
            page.click("button[aria-label='Run prepare now']")
            page.wait_for_function(
                "() => document.getElementById('run-log').textContent.includes('prepared')",
                timeout=60_000,
            )
            page.wait_for_function(
                "() => document.getElementById('log-status').textContent.includes('succeeded')",
                timeout=30_000,
            )
            page.locator("#runs td", has_text="succeeded").first.wait_for()
            assert "preparing" in page.inner_text("#run-log")
            score_runs = httpx.get(f"{running.url}/api/v1/jobs/score/runs", headers=running.auth())
            deadline = time.monotonic() + 30
            while not score_runs.json()["runs"] and time.monotonic() < deadline:
                time.sleep(0.5)  # the dependent job follows its parent's success
                score_runs = httpx.get(
                    f"{running.url}/api/v1/jobs/score/runs", headers=running.auth()
                )
            assert score_runs.json()["runs"], "score did not run after prepare"
            page.screenshot(path=str(SCREENSHOTS / "jobs.png"), full_page=True)
            page.click("button[aria-label='Run slow now']")
            page.wait_for_function(
                "() => document.getElementById('run-log').textContent.includes('slow start')",
                timeout=60_000,
            )
            page.locator("#runs button", has_text="Cancel").first.click()
            page.wait_for_function(
                "() => document.getElementById('jobs-status').textContent.includes('cancelled')",
                timeout=60_000,
            )

            # Alerts: the monitor's firing alert.
            page.click("nav a[href='/ui/alerts']")
            page.locator("#alerts td", has_text="drift.flagged > 0").wait_for()
            assert "firing" in page.inner_text("#alerts tbody")
            page.screenshot(path=str(SCREENSHOTS / "alerts.png"), full_page=True)
            # Refreshed by fetch() from GET /api/v1/alerts, no reload: the rows are drawn again.
            page.locator("#refreshed", has_text="Updated").wait_for(timeout=15_000)
            assert "drift.flagged > 0" in page.inner_text("#alerts tbody")

            # Keys: create (token shown once), then revoke.
            page.goto(running.url + "/ui/keys")
            focus_reaches(page, ["#key-name", "#key-role", "form[action='/ui/keys'] button"])
            page.fill("#key-name", "browser-made")
            page.click("form[action='/ui/keys'] button")
            token = page.input_value("#new-token")
            assert token.startswith("myk_")
            page.screenshot(path=str(SCREENSHOTS / "keys.png"), full_page=True)
            page.goto(running.url + "/ui/keys")
            assert token not in page.content()
            page.click("button[aria-label='Revoke key browser-made']")
            page.wait_for_url("**/ui/keys?notice=revoked")
            # A key made elsewhere appears without a reload, and its fetched row can revoke it.
            httpx.post(
                f"{running.url}/api/v1/keys",
                json={"name": "made-elsewhere"},
                headers=running.auth(),
            ).raise_for_status()
            page.locator("#keys td", has_text="made-elsewhere").wait_for(timeout=15_000)
            page.click("button[aria-label='Revoke key made-elsewhere']")
            page.wait_for_url("**/ui/keys?notice=revoked")
            elsewhere = page.locator("#keys tr", has_text="made-elsewhere")
            assert "revoked" in elsewhere.inner_text()
            assert (
                httpx.get(
                    f"{running.url}/api/v1/overview", headers={"Authorization": f"Bearer {token}"}
                ).status_code
                == 401
            )

            # Sign out: the pages need signing in again.
            page.click(".signout button")
            page.wait_for_url("**/ui/login")
            page.goto(running.url + "/ui/")
            assert "/ui/login" in page.url
        finally:
            browser.close()
    assert problems == []
