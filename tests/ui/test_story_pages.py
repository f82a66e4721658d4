"""The timeline and compare pages on the demo's data, in real Chromium, and the docs' screenshots.

``modelyard demo --quick`` leaves a home with one churn model whose ROC AUC falls once drift is
injected, with alerts firing. The timeline must list its events in time order (deploy first, the
drift flag before the alerts) and draw them; the compare page must show both sides and their
difference with a verdict. Then every page is visited: with ``MODELYARD_WRITE_SCREENSHOTS=1`` each
is saved as ``docs/images/<page>.png`` (1280x800, for ``docs/dashboard.md``), otherwise each is
only checked to render with no console error.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import CHROMIUM_ARGS, serve_in_thread, watch
from .test_demo_pages import _demo

pytestmark = pytest.mark.slow

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
# (file name, path, a selector that shows the page's data has been drawn)
PAGES = (
    ("overview", "/ui/", "#models tbody tr"),
    ("model", "/ui/models/churn", "#chart-rps .main-svg"),
    ("timeline", "/ui/models/churn/timeline?range=24h", "#chart-timeline .main-svg"),
    ("compare", "/ui/models/churn/compare", "#chart-compare-metric .main-svg"),
    ("metrics", "/ui/metrics?metric=roc_auc", "#explore"),
    ("drift", "/ui/drift", "#chart-heatmap .main-svg"),
    ("alerts", "/ui/alerts?all=1", "#alerts tbody tr"),
    ("jobs", "/ui/jobs?job=churn-monitor", "#jobs td"),
    ("experiments", "/ui/experiments", "h1"),
    ("cluster", "/ui/cluster", "h1"),
)


def test_timeline_compare_and_screenshots(chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    home = tmp_path / "demo"
    _demo(home)
    write = os.environ.get("MODELYARD_WRITE_SCREENSHOTS") == "1"
    problems: list[str] = []
    with serve_in_thread(home) as running, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(60_000)
            watch(page, problems)
            page.goto(running.url + "/")
            page.fill("#api_key", running.admin)
            page.click("#key-form button")
            page.wait_for_url(running.url + "/ui/")

            # The model page links both; the timeline lists its events oldest first.
            page.goto(running.url + "/ui/models/churn")
            page.click("a[href='/ui/models/churn/timeline']")
            page.wait_for_url("**/ui/models/churn/timeline")
            page.locator("#chart-timeline .main-svg").first.wait_for()
            items = page.locator("#events li")
            times = [int(v) for v in items.evaluate_all("ls => ls.map(l => l.dataset.at)")]
            kinds = items.evaluate_all("ls => ls.map(l => l.dataset.kind)")
            assert times == sorted(times), times
            assert kinds[0] == "deploy", kinds
            assert "drift" in kinds and "alert" in kinds, kinds
            assert kinds.index("drift") < kinds.index("alert"), kinds
            assert "Deployed build 1" in page.inner_text("#events")
            # The chart carries one marker per event (hover text) besides the metric line.
            assert page.locator("#chart-timeline .scatterlayer .point").count() >= len(times)

            # Compare: both sides, the difference with its interval, and the verdict.
            page.click("a[href='/ui/models/churn/compare']")
            page.wait_for_url("**/ui/models/churn/compare")
            page.locator("#chart-compare-metric .main-svg").first.wait_for()
            assert "period A" in page.inner_text("#col-a")
            assert "period B" in page.inner_text("#col-b")
            verdict = page.inner_text("#verdict")
            assert "ROC AUC is" in verdict and "lower" in verdict and "95 % CI" in verdict, verdict
            cells = page.locator("#row-metric td").all_inner_texts()
            assert len(cells) == 3 and cells[2].startswith("-"), cells
            assert page.locator("#feature-charts .main-svg").count() >= 1
            # Latency differences say how their interval is made (or that there is none).
            assert "bootstrap over hours" in page.inner_text("#latency-note")
            p99 = page.locator("#row-p99 td").all_inner_texts()
            assert p99[2] == "–" or "[" in p99[2] or "no interval" in p99[2], p99

            for name, path, ready in PAGES:
                page.goto(running.url + path)
                page.locator(ready).first.wait_for()
                page.wait_for_load_state("networkidle")
                if write:
                    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(DOCS_IMAGES / f"{name}.png"))
                else:
                    assert page.title().endswith("Modelyard"), (name, page.title())
        finally:
            browser.close()
    assert problems == []
