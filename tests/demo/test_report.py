"""The HTML report: self-contained (Plotly inlined, no remote resource), every section drawn."""

from __future__ import annotations

import math
import re
from pathlib import Path

import orjson

from modelyard.demo.generator import FEATURES
from modelyard.demo.report import plotly_js_path, write_report
from modelyard.demo.results import StoryResults, Window


def _results() -> StoryResults:
    windows = []
    for i in range(4):
        drifted = i >= 2
        metrics = {
            "n": 300,
            "roc_auc": 0.62 if drifted else 0.84,
            "roc_auc_ci_low": 0.55 if drifted else 0.8,
            "roc_auc_ci_high": 0.69 if drifted else 0.88,
            "label_coverage": 1.0 if i < 3 else None,  # the last one: labels not in yet
            "drift.flagged_features": ["tenure"] if drifted else [],
            **{f"psi.{f}": (0.9 if drifted and f == "tenure" else 0.01) for f in FEATURES},
        }
        windows.append(
            Window(i * 4000, (i + 1) * 4000, drifted, metrics, {"p50": 4.0, "p90": 8, "p99": 20})
        )
    info = {
        "home": "/tmp/demo",
        "url": "http://127.0.0.1:1",
        "deployment": "crn:modelyard:deployment/x",
        "window_ms": 4000,
        "traffic_start_ms": 0,
        "windows_before": 2,
        "windows_after": 2,
        "injected_ms": 8000,
        "replicas": 2,
        "replicas_served": {"r1": 610, "r2": 590},
        "train_auc": 0.83,
        "calls": 1200,
        "model": "churn",
    }
    tech = [{"start_ms": 0, "end_ms": 10_000, "tech.latency_p50_ms": 1.2}]
    alert = {"rule": "drift.flagged > 0", "state": "firing", "first_window_start_ms": 8000}
    received = [{"kind": "modelyard.alert", **alert}]
    return StoryResults(info, windows, tech, [alert], received, seconds=42.0)


def test_report_is_self_contained_and_holds_the_data(tmp_path: Path) -> None:
    results = _results()
    path = write_report(tmp_path / "report.html", results)
    page = path.read_text()
    assert plotly_js_path().read_text()[:2000] in page  # Plotly inlined
    # No script, stylesheet or image is fetched from anywhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    for section in ("ROC AUC per window", "Label coverage", "PSI per feature", "Latency", "Alerts"):
        assert section in page
    data = page.split("const figures = ", 1)[1].split(";\nfor (const", 1)[0]
    figures = orjson.loads(data.replace("<\\/", "</"))
    assert figures["auc"]["data"][0]["y"] == [0.84, 0.84, 0.62, 0.62]
    heat = figures["psi"]["data"][0]
    assert heat["y"] == list(FEATURES) and heat["z"][0][2] == 0.9
    assert figures["coverage"]["data"][0]["y"][3] is None  # missing, not zero
    assert "drift.flagged &gt; 0" in page
    assert "1 alert notification(s) received" in page


def test_checks_follow_the_windows() -> None:
    results = _results()
    assert all(results.checks().values())
    results.windows[0].metrics["drift.flagged_features"] = ["region"]  # a false alarm
    results.windows[3].metrics["roc_auc"] = None
    checks = results.checks()
    assert not checks["no drift flagged before the injection"]
    assert not checks["ROC AUC computed for every window"]
    assert math.isnan(results.windows[3].value("roc_auc"))
    assert "NOT" in results.summary_text()


def test_a_missing_window_fails_the_auc_check() -> None:
    results = _results()
    del results.windows[1]  # the monitor dropped (or wrote an empty) window
    assert all(not math.isnan(w.value("roc_auc")) for w in results.windows)
    assert not results.checks()["ROC AUC computed for every window"]
    results = _results()
    results.info["windows_after"] = 3  # the story's grid has a window the results lack
    assert not results.checks()["ROC AUC computed for every window"]


def test_replicas_that_served_are_counted_not_assumed() -> None:
    results = _results()
    assert "2 replicas served calls: r1 610, r2 590" in results.summary_text()
    results.info["replicas_served"] = {"r1": 1200}
    assert not results.checks()["every replica served calls"]
    assert "1 replicas served calls" in results.summary_text()
