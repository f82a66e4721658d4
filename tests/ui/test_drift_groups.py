"""The drift page's "Multivariate drift and segment gaps" section and ``GET /api/v1/drift/groups``:
monitor windows with the ``multivariate_drift`` and ``segments`` groups, made from seeded data in
the server's real SQLite store, read over HTTP and drawn in Debian's headless Chromium."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard.ids import new_crn, new_prediction_uuid
from modelyard.monitors import MonitorSpec, run_monitor, upload_reference
from modelyard.store.base import Identity, MetricsStore, Prediction, RollupPolicy

from .conftest import CHROMIUM_ARGS, SCREENSHOTS, Running, Ui, serve_in_thread, watch

HOUR = 3_600_000
REGIONS = ["north", "east", "west", "south"]


def _rows(rng: np.random.Generator, n: int, shifted: bool) -> pd.DataFrame:
    """x1 and x2 correlated +0.8 (-0.8 when ``shifted``: same marginals); region south's scores
    shuffled when ``shifted`` (its AUC falls to chance, the others' stays)."""
    rho = -0.8 if shifted else 0.8
    x1 = rng.normal(0, 1, n)
    x2 = rho * x1 + np.sqrt(1 - rho**2) * rng.normal(0, 1, n)
    region = rng.choice(REGIONS, n, p=[0.3, 0.3, 0.2, 0.2])
    probability = 1 / (1 + np.exp(-2.0 * rng.normal(0, 1, n)))
    churned = (rng.random(n) < probability).astype(int)
    score = probability.copy()
    if shifted:
        south = region == "south"
        score[south] = rng.permutation(score[south])
    return pd.DataFrame(
        {"x1": x1, "x2": x2, "region": region, "probability": score, "churned": churned}
    )


def _registered(registry: Any, store: MetricsStore) -> Identity:
    """A model, a build and a deployment in the registry (listed by the drift page's picker)."""
    model, _ = registry.create_model("churn")
    build = registry.add_build(
        "churn",
        digest=hashlib.sha256(b"drift-groups").hexdigest(),
        file="predict.py",
        function="predict",
        python="/usr/bin/python3",
        env_key="base",
        ok=True,
    )
    deployment = registry.add_deployment("churn", build.crn)
    return Identity(model.crn, build.crn, deployment.crn)


def _fill(store: MetricsStore, ident: Identity, first: int, windows: list[bool]) -> None:
    rng = np.random.default_rng(5)
    for w, shifted in enumerate(windows):
        frame = _rows(rng, 400, shifted)
        times = np.sort(rng.choice(HOUR, size=len(frame), replace=False)) + first + w * HOUR
        store.write_predictions(
            [
                Prediction(new_prediction_uuid(), ident, int(t), int(t) + 2, row)
                for row, t in zip(frame.to_dict("records"), times, strict=True)
            ]
        )
    upload_reference(
        _rows(np.random.default_rng(6), 2000, False), ident.deployment_crn, store=store
    )


def _spec(deployment: str, name: str) -> MonitorSpec:
    return MonitorSpec.from_dict(
        {
            "name": name,
            "deployment": deployment,
            "reference": {"stored": "training"},
            "features": ["x1", "x2"],
            "prediction": "probability",
            "label": "churned",
            "window": "1h",
            "segments": ["region"],
            "metrics": ["classification", "multivariate_drift"],
            "alerts": ["fairness.gap.roc_auc > 0.1", "multivariate_drift.flagged > 0"],
        }
    )


def test_groups_route_gives_each_window_and_says_why_a_rolled_up_one_is_empty(
    with_ui: Any,
) -> None:
    async def scenario(ui: Ui) -> None:
        store = ui.services.store
        ident = _registered(ui.services.registry, store)
        dep = ident.deployment_crn
        first = (time.time_ns() // 1_000_000 // HOUR - 6) * HOUR
        _fill(store, ident, first, [False, True, True])
        computed = run_monitor(_spec(dep, "early"), window=(first, first + 2 * HOUR), store=store)
        assert len(computed) == 2
        store.rollup(RollupPolicy(raw_horizon_ms=1000))
        late = run_monitor(
            _spec(dep, "late"), window=(first + 2 * HOUR, first + 3 * HOUR), store=store
        )
        assert "rolled up" in late[0].metrics["segments.reason"]
        answer = await ui.client.get(
            "/api/v1/drift/groups",
            params={"deployment": dep},
            headers={"Authorization": f"Bearer {ui.admin}"},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        windows = body["windows"]
        assert [w["start_ms"] for w in windows] == [first, first + HOUR, first + 2 * HOUR]
        assert body["gap_metrics"] == ["accuracy", "recall", "roc_auc", "selection_rate"]
        stable, shifted, rolled = windows
        assert stable["multivariate"]["flagged"] == 0 and stable["gaps"]["roc_auc"]["value"] < 0.1
        assert shifted["multivariate"]["flagged"] == 1
        assert set(shifted["multivariate"]["top_features"]) == {"x1", "x2"}
        assert shifted["gaps"]["roc_auc"]["min_segment"] == "region=south"
        assert shifted["gaps"]["roc_auc"]["value"] == computed[1].metrics["fairness.gap.roc_auc"]
        assert rolled["source"] == "sketch" and rolled["gaps"] == {}
        assert "rolled up" in rolled["segments_reason"]
        assert "rolled up" in rolled["multivariate"]["reason"]
        unknown = await ui.client.get(
            "/api/v1/drift/groups",
            params={"deployment": new_crn("deployment")},
            headers={"Authorization": f"Bearer {ui.admin}"},
        )
        assert unknown.status_code == 404, unknown.text

    with_ui(scenario)


@pytest.fixture
def running(modelyard_home: Path) -> Iterator[Running]:
    with serve_in_thread(modelyard_home) as run:
        yield run


@pytest.mark.slow
def test_drift_page_shows_domain_auc_and_segment_gaps_in_chromium(
    running: Running, chromium_path: str
) -> None:
    from playwright.sync_api import sync_playwright

    services = running.app.state.services
    ident = _registered(services.registry, services.store)
    first = (time.time_ns() // 1_000_000 // HOUR - 4) * HOUR
    _fill(services.store, ident, first, [False, True])
    run_monitor(
        _spec(ident.deployment_crn, "groups"),
        window=(first, first + 2 * HOUR),
        store=services.store,
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            watch(page, problems)
            page.goto(running.url + "/ui/login")
            page.fill("#api_key", running.admin)
            page.keyboard.press("Enter")
            page.wait_for_url(running.url + "/ui/")
            page.goto(running.url + "/ui/drift?deployment=" + ident.deployment_crn)
            page.locator("#groups tbody tr").nth(1).wait_for()
            assert "2 monitor windows" in page.inner_text("#groups-status")
            rows = [
                r.locator("td").all_inner_texts() for r in page.locator("#groups tbody tr").all()
            ]
            stable, shifted = rows
            assert stable[3] == "no" and shifted[3] == "⚑ yes", (
                rows
            )  # flagged: a symbol, not colour only
            assert shifted[4] in ("x1, x2", "x2, x1"), rows
            assert re.search(r"roc_auc 0\.\d{3} \(lowest region=south, highest", shifted[5]), rows
            auc, interval = shifted[2].split(" ", 1)  # "0.912 [0.89, 0.93]"
            low, high = (float(v) for v in interval.strip("[]").split(", "))
            assert 0.5 < low < float(auc) < high and float(auc) > 0.8, rows
            page.locator("#chart-multivariate .main-svg").first.wait_for()
            page.locator("#chart-gaps .main-svg").first.wait_for()
            assert page.locator("#chart-gaps .scatterlayer .trace").count() == 4  # gap metrics
            page.locator("#h-groups").scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "drift-groups.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    answer = httpx.get(
        f"{running.url}/api/v1/alerts", params={"monitor": "groups"}, headers=running.auth()
    )
    rules = sorted(a["rule"] for a in answer.json()["alerts"])
    assert rules == ["fairness.gap.roc_auc > 0.1", "multivariate_drift.flagged > 0"]
