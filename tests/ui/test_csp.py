"""The dashboard's Content-Security-Policy: every page answers with it (``default-src 'self'``,
``frame-ancestors 'none'``, ``nosniff``), and in a real headless Chromium every page still works
under it, Plotly charts included, with no violation reported (no console error, no
``securitypolicyviolation`` event)."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.ui.common import CONTENT_SECURITY_POLICY

from .conftest import CHROMIUM_ARGS, Running, serve_in_thread, watch

PREDICT = """
import modelyard

@modelyard.model_metrics
def predict(args):
    modelyard.track_metric("score", args["x"] / 20)
    return {"double": args["x"] * 2}
"""

PLOTLY_CSS = Path(__file__).parents[2] / "src" / "modelyard" / "ui" / "static" / "plotly.css"

PAGES = [
    "/ui/",
    "/ui/models/churn",
    "/ui/metrics?model=churn",
    "/ui/drift",
    "/ui/jobs",
    "/ui/alerts",
    "/ui/keys",
    "/ui/experiments",
]

HEATMAP = """() => {
  const div = document.createElement("div");
  div.id = "csp-heatmap";
  document.querySelector("main").append(div);
  return Plotly.newPlot(div, [{type: "heatmap", z: [[1, 2], [3, 4]], x: ["a", "b"],
                              y: ["c", "d"], colorbar: {title: {text: "z"}}}]);
}"""

# Injected by the browser itself (not a page script), so the policy does not stop it.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " at " +
                           e.sourceFile + ":" + e.lineNumber);
});
"""


@pytest.fixture
def running(modelyard_home: Path) -> Iterator[Running]:
    with serve_in_thread(modelyard_home, tech_interval_s=1.0) as run:
        yield run


def test_the_policy_allows_nothing_from_elsewhere_and_no_inline_code(running: Running) -> None:
    directives = {part.strip() for part in CONTENT_SECURITY_POLICY.split(";")}
    assert {"default-src 'self'", "script-src 'self'"} <= directives
    assert {"frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"} <= directives
    policy = CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "*" not in policy
    # 'unsafe-hashes' only with Plotly's two fixed style attributes: "" and its image-rendering
    style_src = next(part for part in directives if part.startswith("style-src "))
    assert style_src.startswith("style-src 'self' 'unsafe-hashes' 'sha256-"), style_src
    assert style_src.count("'sha256-") == 2, style_src
    with httpx.Client(base_url=running.url, timeout=30) as client:
        login = client.get("/ui/login")
        assert login.status_code == 200
        assert login.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert login.headers["X-Content-Type-Options"] == "nosniff"
        for name in ("app.js", "app.css", "plotly.min.js", "plotly.css"):
            static = client.get(f"/ui/static/{name}")
            assert static.status_code == 200
            assert static.headers["X-Content-Type-Options"] == "nosniff"
    templates = Path(__file__).parents[2] / "src" / "modelyard" / "ui" / "templates"
    for template in templates.glob("*.html"):
        text = template.read_text()
        # Scripts only from files (JSON data blocks are not run); no style attributes or blocks.
        for opening in text.split("<script")[1:]:
            head = opening.split(">", 1)[0]
            assert 'src="/ui/static/' in head or 'type="application/json"' in head, template
        assert "style=" not in text and "<style" not in text, template


@pytest.mark.slow
def test_pages_work_under_the_policy_in_chromium(
    running: Running, chromium_path: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    project = tmp_path / "churn"
    project.mkdir()
    (project / "predict.py").write_text(textwrap.dedent(PREDICT))
    deployed = httpx.post(
        f"{running.url}/api/v1/models/churn/deploy",
        json={"project": str(project), "example": {"x": 3}},
        headers=running.auth(),
        timeout=300,
    )
    assert deployed.status_code == 201, deployed.text
    for x in range(6):
        httpx.post(
            f"{running.url}/api/v1/models/churn/predict", json={"x": x}, headers=running.auth()
        ).raise_for_status()
    time.sleep(2.5)  # a few one-second tech intervals for the model page's charts
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.add_init_script(RECORD_VIOLATIONS)
            watch(page, problems)
            page.goto(running.url + "/ui/login")
            page.fill("#api_key", running.admin)
            page.keyboard.press("Enter")
            page.wait_for_url(running.url + "/ui/")
            for path in PAGES:
                answer = page.goto(running.url + path)
                assert answer is not None and answer.status == 200, path
                assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
                page.wait_for_load_state("networkidle")
                violations = page.evaluate("window.__violations")
                assert violations == [], (path, violations)
                if path == "/ui/models/churn":  # Plotly drew its charts (styles and all)
                    page.locator(".js-plotly-plot .main-svg").first.wait_for()
                    # plotly.css holds the rules of the installed Plotly (see ui/assets.py)
                    version = page.evaluate("Plotly.version")
                    assert PLOTLY_CSS.read_text().startswith(f"/* plotly.js v{version}:"), version
                    # Its rules apply: the modebar is laid out by plotly.css, not inline styles.
                    position = page.evaluate(
                        "() => getComputedStyle(document.querySelector('.modebar')).position"
                    )
                    assert position == "absolute", position
                    # A heatmap with a colour bar, as the drift page draws (style attributes).
                    page.evaluate(HEATMAP)
                    page.locator("#csp-heatmap .main-svg").first.wait_for()
                    page.locator("#csp-heatmap image").first.wait_for(state="attached")
                    page.fill("#try-input", '{"x": 4}')  # the page's own script still runs
                    page.click("#try-form button[type=submit]")
                    page.locator("#try-output", has_text="8").wait_for()
                    assert page.evaluate("window.__violations") == []
        finally:
            browser.close()
    assert problems == [], problems
