"""Every dashboard page on the data set ``modelyard demo --quick`` produces, in real Chromium.

The demo runs as the user would run it (its own server process, a scikit-learn churn model with
two replicas, calls, late churn labels, a monitor job, drift, alerts) and leaves its home behind;
the dashboard's server then opens that home (restoring the deployment) and the browser walks
every page, checking that each shows the demo's data, with no console errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CHROMIUM_ARGS, SCREENSHOTS, focus_reaches, serve_in_thread, watch

pytestmark = pytest.mark.slow


def _demo(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    done = subprocess.run(
        [sys.executable, "-c", "from modelyard.cli import main; main()", "demo", "--quick",
         "--home", str(home)],
        env=env, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_every_page_on_the_demo_data(chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    home = tmp_path / "demo"
    _demo(home)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with serve_in_thread(home) as running, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)  # the machine is shared: waits, not sleeps
            watch(page, problems)
            page.goto(running.url + "/")
            page.fill("#api_key", running.admin)
            page.click("#key-form button")
            page.wait_for_url(running.url + "/ui/")

            # Overview: the churn model with the monitor's ROC AUC, drift flags and alerts.
            row = page.locator("#models tbody tr", has_text="churn")
            row.wait_for()
            cells = row.locator("td").all_inner_texts()  # the model's name is the row's th
            assert "Alerting" in cells[0] and "deployment active" in cells[0], cells
            assert 0.0 <= float(cells[5].split()[1]) <= 1.0, cells  # the latest ROC AUC
            assert cells[6].startswith("⚑ "), cells  # drift was injected: features flagged
            assert "firing" in cells[7] and "roc_auc < 0.7" in cells[7], cells
            page.screenshot(path=str(SCREENSHOTS / "demo-overview.png"), full_page=True)

            # Model: replicas come back healthy, traffic charts, the example through the form.
            page.click("#models a")
            page.wait_for_url(running.url + "/ui/models/churn")
            page.locator("#replicas tbody td", has_text="healthy").first.wait_for(timeout=90_000)
            page.locator("#chart-rps .main-svg").first.wait_for()
            page.locator("#chart-latency .main-svg").first.wait_for()
            page.locator("#predictions tbody button").first.wait_for()
            page.click("#try-form button")
            page.wait_for_function(
                "() => document.getElementById('try-output').textContent.includes('HTTP 200')",
                timeout=60_000,
            )
            assert '"success": true' in page.inner_text("#try-output")
            page.locator("#predictions tbody button").first.click()
            page.locator("#prediction-detail h3").wait_for()
            page.screenshot(path=str(SCREENSHOTS / "demo-model.png"), full_page=True)

            # Metrics explorer: the monitor's ROC AUC per window.
            page.click("nav a[href='/ui/metrics']")
            page.wait_for_load_state()  # app.js bound the form (else the click submits it)
            page.fill("#metric", "roc_auc")
            page.click("#explore button")
            page.wait_for_function(
                "() => document.getElementById('resolution').textContent.includes('aggregates')"
            )
            page.locator("#chart-metric .main-svg").first.wait_for()
            page.screenshot(path=str(SCREENSHOTS / "demo-metrics.png"), full_page=True)

            # Drift: the features by windows heatmap, a flagged cell's two distributions.
            page.click("nav a[href='/ui/drift']")
            page.wait_for_function(
                "() => document.getElementById('drift-status').textContent"
                ".includes('features over')"
            )
            page.locator("#chart-heatmap .main-svg").first.wait_for()
            flagged = page.locator("#cell option", has_text="flagged")
            page.select_option("#cell", value=flagged.first.get_attribute("value"))
            page.wait_for_function(
                "() => document.getElementById('cell-status').textContent.includes('Window')"
            )
            page.locator("#chart-current .main-svg").first.wait_for()
            page.screenshot(path=str(SCREENSHOTS / "demo-drift.png"), full_page=True)

            # Jobs: the demo's monitor job, its history, run it now and watch it finish.
            page.click("nav a[href='/ui/jobs']")
            page.locator("#jobs td", has_text="churn-monitor").wait_for()
            page.select_option("#job-select", "churn-monitor")
            page.locator("#runs td", has_text="succeeded").first.wait_for()
            focus_reaches(page, ["button[aria-label='Run churn-monitor now']", "#job-select"])
            page.click("button[aria-label='Run churn-monitor now']")
            page.wait_for_function(
                "() => /Run (succeeded|failed)/"
                ".test(document.getElementById('log-status').textContent)",
                timeout=180_000,
            )
            assert "succeeded" in page.inner_text("#log-status"), page.inner_text("#run-log")
            page.screenshot(path=str(SCREENSHOTS / "demo-jobs.png"), full_page=True)

            # Alerts: both of the demo's rules fired (a later window may have resolved one).
            page.click("nav a[href='/ui/alerts']")
            assert "firing" in page.inner_text("#alerts tbody")
            page.click("a[href='/ui/alerts?all=1']")
            page.wait_for_url("**/ui/alerts?all=1")
            alerts = page.inner_text("#alerts tbody")
            assert "roc_auc < 0.7" in alerts and "drift.flagged > 0" in alerts, alerts
            page.screenshot(path=str(SCREENSHOTS / "demo-alerts.png"), full_page=True)

            page.click("nav a[href='/ui/keys']")
            assert "admin" in page.inner_text("#keys")
        finally:
            browser.close()
    assert problems == []
