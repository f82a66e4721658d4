"""The dashboard's experiments page: over the real app in-process (who sees which runs, the nav
link, a kept file downloaded with the session) and in a real headless Chromium (the runs table
sorted by a metric both ways, the charts across runs, one run's fields, files and download, no
console error under the Content-Security-Policy).

Runs are recorded through the server's own registry (``registry.experiments``, runs, metrics
and kept files) as the runner records them, so the page is tested without waiting for scripts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelyard import clock
from modelyard.registry import Registry
from modelyard.runtime.logs import run_log_path
from modelyard.specs.experiment import ExperimentSpec

from .conftest import (
    CHROMIUM_ARGS,
    SCREENSHOTS,
    Running,
    Ui,
    focus_reaches,
    serve_in_thread,
    watch,
)
from .test_people_pages import PASSWORDS, cast

WEIGHTS = bytes(range(256)) * 3
TRACES = "() => document.querySelectorAll('#chart-history .scatterlayer .trace').length === %d"


def record_experiment(
    registry: Registry,
    folder: Path,
    project_crn: str | None,
    label: str | None,
    args: list[str],
    losses: list[float],
    accuracy: float,
    home: Path | None = None,
) -> str:
    """A finished experiment run as the runner leaves it: code digest, metrics over time (the
    last value of each is what tables show), a kept file. Returns the run's uuid."""
    spec = ExperimentSpec(script="train.py", project=str(folder), args=args, label=label, cpus=2)
    job = registry.experiments.create(spec, project_crn, "admin")
    now = clock.now_ms()
    run = registry.create_run(job.id, now, 1, "manual")
    registry.update_run(run.id, state="running")
    registry.experiments.set_code_digest(run.id, "sha256:" + "ab" * 32)
    for i, loss in enumerate(losses):
        registry.add_run_metrics(run.id, {"loss": loss}, now + i)
    registry.add_run_metrics(run.id, {"accuracy": accuracy, "model": "tree"}, now + len(losses))
    registry.experiments.track_file(run.id, "out/weights.bin")
    registry.experiments.keep_file(run.id, "out/weights.bin", WEIGHTS)
    uuid = run.id.rsplit("/", 1)[-1]
    if home is not None:  # the run's output, where the runner writes it
        log = run_log_path(home, uuid)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"training {label}\nkept out/weights.bin\n")
        registry.update_run(run.id, log_path=str(log))
    registry.update_run(run.id, state="succeeded", exit_code=0)
    return uuid


def _page_data(html: str) -> Any:
    found = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert found, html[:2000]
    return orjson.loads(found.group(1))


def test_each_caller_sees_the_experiments_of_their_projects(
    with_ui: Any, database: dict[str, Any], tmp_path: Path
) -> None:
    async def scenario(ui: Ui) -> None:
        registry = ui.services.registry
        roles = cast(registry)
        in_alpha = record_experiment(
            registry, tmp_path, roles.alpha, "alpha-run", ["--lr", "0.1"], [3, 2], 0.8
        )
        in_beta = record_experiment(registry, tmp_path, roles.beta, None, [], [1], 0.9)

        await ui.sign_in()  # the admin: every project, and may cancel
        page = await ui.client.get("/ui/experiments")
        assert page.status_code == 200
        assert '<a href="/ui/experiments" aria-current="page">Experiments</a>' in page.text
        data = _page_data(page.text)
        assert [e["uuid"] for e in data["experiments"]] == [in_beta, in_alpha]
        assert data["operate"] is True
        shown = data["experiments"][1]
        assert shown["name"] == "alpha-run" and shown["project"] == "pam/alpha"
        assert shown["metrics"] == {"loss": 2, "accuracy": 0.8, "model": "tree"}
        assert shown["resources"]["cpus"] == 2.0 and shown["args"] == ["--lr", "0.1"]
        assert [f["path"] for f in shown["files"]] == ["out/weights.bin"]

        async with ui.visitor("vic", PASSWORDS["vic"]) as vic:  # a viewer in alpha only
            page = await vic.client.get("/ui/experiments")
            data = _page_data(page.text)
            assert [e["uuid"] for e in data["experiments"]] == [in_alpha]
            assert data["operate"] is False
            # The newest run vic may see, though a newer one of beta exists.
            newest = await vic.client.get("/api/v1/experiments", params={"limit": 1})
            assert [e["uuid"] for e in newest.json()["experiments"]] == [in_alpha]
            path = f"/api/v1/experiments/{in_alpha}/files/out/weights.bin"
            download = await vic.client.get(path)
            assert download.status_code == 200 and download.content == WEIGHTS
            assert "weights.bin" in download.headers["content-disposition"]
            hidden = await vic.client.get(f"/api/v1/experiments/{in_beta}/files/out/weights.bin")
            assert hidden.status_code == 404
            assert (await vic.client.get("/ui/experiments?run=" + in_beta)).status_code == 200

    with_ui(scenario, **database)


@pytest.fixture
def running(modelyard_home: Path) -> Iterator[Running]:
    with serve_in_thread(modelyard_home) as run:
        yield run


@pytest.mark.slow
def test_experiments_page_in_chromium(running: Running, chromium_path: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    registry = running.app.state.services.registry
    home = running.app.state.services.first_start.home
    made = {
        label: record_experiment(registry, tmp_path, None, label, args, losses, accuracy, home)
        for label, args, losses, accuracy in (
            ("slow-lr", ["--lr", "0.01"], [5.0, 4.0, 3.5], 0.7),
            ("fast-lr", ["--lr", "0.5"], [2.0, 1.0, 0.5], 0.95),
            ("mid-lr", ["--lr", "0.1"], [3.0, 2.0, 1.5], 0.85),
        )
    }
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1400, "height": 1000}, accept_downloads=True
            )
            page = context.new_page()
            page.set_default_timeout(60_000)
            watch(page, problems)
            page.goto(running.url + "/ui/login")
            page.fill("#api_key", running.admin)
            page.keyboard.press("Enter")
            page.wait_for_url(running.url + "/ui/")
            page.click("nav a[href='/ui/experiments']")
            page.wait_for_url(running.url + "/ui/experiments")

            def order() -> list[str]:
                rows = page.locator("#runs tbody tr")
                return [rows.nth(i).get_attribute("data-run") or "" for i in range(rows.count())]

            page.locator("#runs tbody tr").nth(2).wait_for()
            assert order() == [made["mid-lr"], made["fast-lr"], made["slow-lr"]]  # newest first
            # Sort by a metric: best first, then the other way round with a second click.
            page.click("#runs button[data-sort='m:accuracy']")
            assert order() == [made["fast-lr"], made["mid-lr"], made["slow-lr"]]
            sorted_by = page.locator("#runs th[aria-sort]")
            assert sorted_by.get_attribute("aria-sort") == "descending"
            assert "accuracy" in sorted_by.inner_text()
            page.click("#runs button[data-sort='m:accuracy']")
            assert order() == [made["slow-lr"], made["mid-lr"], made["fast-lr"]]
            page.click("#runs button[data-sort='name']")
            assert order() == [made["fast-lr"], made["mid-lr"], made["slow-lr"]]
            row = page.locator(f"#runs tr[data-run='{made['fast-lr']}']").inner_text()
            assert "train.py --lr 0.5" in row and "0.95" in row and "tree" in row

            # Charts across the ticked runs: a bar per run, a line per run over its values.
            page.locator("#chart-last .main-svg").first.wait_for()
            page.select_option("#metric-select", "loss")
            page.wait_for_function(TRACES % 3)
            assert page.locator("#chart-last .bars .point").count() == 3
            page.uncheck("input[aria-label='Chart run slow-lr']")
            page.wait_for_function(TRACES % 2)
            focus_reaches(page, ["#runs button[data-sort='m:loss']", "#metric-select"], 120)

            # One run: its fields, its kept file downloaded through the link.
            page.click("button[aria-label='Show run fast-lr']")
            page.locator("#run-fields td", has_text="--lr 0.5").wait_for()
            assert "sha256:" + "ab" * 32 in page.inner_text("#run-fields")
            page.locator("#run-log", has_text="training fast-lr").wait_for()
            link = page.locator("#run-files a", has_text="out/weights.bin")
            with page.expect_download() as info:
                link.click()
            saved = tmp_path / "downloaded.bin"
            info.value.save_as(saved)
            assert saved.read_bytes() == WEIGHTS
            assert info.value.suggested_filename == "weights.bin"
            page.screenshot(path=str(SCREENSHOTS / "experiments.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
