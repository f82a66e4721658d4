"""The story's self-contained HTML report: one file, no network needed to open it.

Charts are Plotly figures; ``plotly.min.js`` is inlined from the installed ``plotly`` package (the
dashboard's dependency), so the file opens offline and references no CDN. Sections: the checks,
ROC AUC per window with its 95 % interval, label coverage, PSI per feature per window as a
heatmap, latency percentiles (the web app's round trips per window and the gateway's own per
interval), and the alerts with the webhook deliveries.
"""

from __future__ import annotations

import html
import importlib.util
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from modelyard.demo.results import StoryResults, psi_matrix
from modelyard.errors import ModelyardError
from modelyard.ui.look import DRIFT_COLORSCALE, FLAG

__all__ = ["plotly_js_path", "write_report"]


def plotly_js_path() -> Path:
    """The bundled plotly.min.js of the installed plotly package (located, not imported)."""
    spec = importlib.util.find_spec("plotly")
    path = Path((spec.origin if spec else None) or ".").parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ModelyardError(
            f"plotly.min.js is missing at {path}; the report inlines it: reinstall plotly with "
            "'pip install --force-reinstall plotly'"
        )
    return path


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def _at(ms: float) -> str:
    """A Plotly date-axis value (UTC, milliseconds)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _num(v: float) -> float | None:
    return None if math.isnan(v) else v


def _figures(results: StoryResults) -> dict[str, dict[str, Any]]:
    # Windows are placed at their middle on a time axis, so the gateway's own intervals (the
    # server's MODELYARD_TECH_INTERVAL, which the demo sets to StoryConfig.tech_interval_s) and
    # the drift line fall where they happened.
    x = [_at((w.start_ms + w.end_ms) / 2) for w in results.windows]
    injected = _at(int(results.info["injected_ms"]))
    marker = {
        "type": "line", "xref": "x", "yref": "paper", "x0": injected, "x1": injected,
        "y0": 0, "y1": 1, "line": {"color": "#d62728", "dash": "dot"},
    }  # fmt: skip
    note = {
        "x": injected, "y": 1.02, "xref": "x", "yref": "paper", "text": "drift injected",
        "showarrow": False, "font": {"color": "#d62728"},
    }  # fmt: skip
    base = {
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "height": 320,
        "shapes": [marker],
        "annotations": [note],
        "xaxis": {"title": {"text": "time (UTC); each point is a monitor window"}, "type": "date"},
    }
    return {
        "auc": _auc_figure(results, x, base),
        "coverage": _coverage_figure(results, x, base),
        "psi": _psi_figure(results, x, base),
        "latency": _latency_figure(results, x, base),
    }


def _auc_figure(results: StoryResults, x: list[str], base: dict[str, Any]) -> dict[str, Any]:
    windows = results.windows
    auc = [w.value("roc_auc") for w in windows]
    low = [w.value("roc_auc_ci_low") for w in windows]
    high = [w.value("roc_auc_ci_high") for w in windows]
    return {
        "data": [
            {
                "type": "scatter", "mode": "lines+markers", "name": "ROC AUC", "x": x,
                "y": [_num(v) for v in auc],
                "error_y": {
                    "type": "data", "symmetric": False,
                    "array": [_num(h - a) for h, a in zip(high, auc, strict=True)],
                    "arrayminus": [_num(a - lo) for a, lo in zip(auc, low, strict=True)],
                },
            },
            {
                "type": "scatter", "mode": "lines", "name": "on the training data", "x": x,
                "y": [results.info.get("train_auc")] * len(x), "line": {"dash": "dash"},
            },
        ],
        "layout": {**base, "yaxis": {"title": {"text": "ROC AUC (95 % CI)"}, "range": [0.4, 1]}},
    }  # fmt: skip


def _coverage_figure(results: StoryResults, x: list[str], base: dict[str, Any]) -> dict[str, Any]:
    windows = results.windows
    return {
        "data": [
            {"type": "bar", "name": "label coverage", "x": x,
             "y": [_num(w.value("label_coverage")) for w in windows]},
            {"type": "scatter", "mode": "lines+markers", "name": "predictions", "x": x,
             "y": [_num(w.value("n")) for w in windows], "yaxis": "y2"},
        ],
        "layout": {
            **base,
            "yaxis": {"title": {"text": "share labelled"}, "range": [0, 1.05]},
            "yaxis2": {"title": {"text": "predictions"}, "overlaying": "y", "side": "right"},
        },
    }  # fmt: skip


def _psi_figure(results: StoryResults, x: list[str], base: dict[str, Any]) -> dict[str, Any]:
    windows = results.windows
    features, psi = psi_matrix(windows)
    flagged = [[FLAG if f in w.flagged else "" for w in windows] for f in features]
    return {
        "data": [
            {
                "type": "heatmap", "x": x, "y": features,
                "z": [[_num(v) for v in row] for row in psi], "zmin": 0, "zmax": 1,
                "colorscale": [list(stop) for stop in DRIFT_COLORSCALE],  # the dashboard's
                "colorbar": {"title": {"text": "PSI<br>light: calm<br>dark: drift"}},
                "text": flagged, "texttemplate": "%{text}",
                "hovertemplate": "%{y} @ %{x}: PSI %{z:.3f}<extra></extra>",
            }
        ],
        "layout": {**base, "height": 420, "margin": {"l": 130, "r": 20, "t": 40, "b": 50}},
    }  # fmt: skip


def _latency_figure(results: StoryResults, x: list[str], base: dict[str, Any]) -> dict[str, Any]:
    windows = results.windows
    lat_traces: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines+markers", "name": f"web app {p}", "x": x,
         "y": [_num(w.latency_ms.get(p, math.nan)) for w in windows]}
        for p in ("p50", "p90", "p99")
    ]  # fmt: skip
    tech = results.tech
    tx = [_at((int(t["start_ms"]) + int(t["end_ms"])) / 2) for t in tech]
    lat_traces += [
        {"type": "scatter", "mode": "lines+markers", "name": f"gateway {p} (its own intervals)",
         "x": tx, "y": [t.get(f"tech.latency_{p}_ms") for t in tech], "line": {"dash": "dot"}}
        for p in ("p50", "p95", "p99")
    ]  # fmt: skip
    return {
        "data": lat_traces,
        "layout": {**base, "yaxis": {"title": {"text": "milliseconds"}, "type": "log"}},
    }


def _alerts_table(results: StoryResults) -> str:
    if not results.alerts:
        return "<p>No alert fired.</p>"
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                a.get("rule"),
                a.get("state"),
                _clock(int(a["first_window_start_ms"])) if a.get("first_window_start_ms") else "",
                a.get("value"),
                _clock(int(a["fired_ms"])) if a.get("fired_ms") else "",
            )
        )
        + "</tr>"
        for a in results.alerts
    )
    hooks = len(results.received)
    return (
        "<table><tr><th>rule</th><th>state</th><th>first window</th><th>worst value</th>"
        f"<th>fired at</th></tr>{rows}</table><p>{hooks} alert notification(s) received by the "
        "demo's webhook receiver.</p>"
    )


def write_report(path: Path, results: StoryResults) -> Path:
    """Write the report to ``path`` (replacing it) and return the path."""
    figures = orjson.dumps(_figures(results), option=orjson.OPT_SERIALIZE_NUMPY).decode()
    figures = figures.replace("</", "<\\/")  # inside <script>: never close it early
    plotly = plotly_js_path().read_text()
    info = results.info
    checks = "".join(
        f"<li class={'ok' if ok else 'bad'}>{'✔' if ok else '✘'} {html.escape(claim)}</li>"
        for claim, ok in results.checks().items()
    )
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (
            ("server", info["url"]),
            ("home", info["home"]),
            ("deployment", info["deployment"]),
            ("calls through POST /model", info.get("calls", "")),
            ("monitor window", f"{int(info['window_ms']) // 1000} s"),
            ("drift injected at", _clock(int(info["injected_ms"])) + " UTC"),
            ("ROC AUC on the training data", f"{float(info['train_auc']):.3f}"),
            ("job runs", len(info.get("runs", []))),
            ("told in", f"{results.seconds:.0f} s" if not math.isnan(results.seconds) else ""),
        )
    )
    sections = [
        ("auc", "ROC AUC per window, with its 95 % interval (DeLong)"),
        ("coverage", "Label coverage: the share of each window's predictions with ground truth"),
        ("psi", "Drift: PSI per feature per window (⚑ = flagged by any method)"),
        ("latency", "Latency percentiles"),
    ]
    body = "".join(
        f"<h2>{html.escape(title)}</h2><div id='{key}' class='chart'></div>"
        for key, title in sections
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Modelyard demo: the churn story</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }}
th, td {{ text-align: left; padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; }}
li.ok {{ color: #1a7f37; }} li.bad {{ color: #c0392b; }}
.chart {{ width: 100%; }}
</style>
<script>{plotly}</script>
</head><body>
<h1>The churn story</h1>
<p>A telco serves a churn model (2 replicas) through Modelyard. Customers' churn became known
later; a recurring job joined it by uuid, computed accuracy and drift per window, and alerted.
Midway a new customer population arrived whose churn followed another relationship.</p>
<table>{facts}</table>
<ul>{checks}</ul>
{body}
<h2>Alerts</h2>
{_alerts_table(results)}
<script>
const figures = {figures};
for (const [id, fig] of Object.entries(figures)) {{
  Plotly.newPlot(id, fig.data, fig.layout, {{displaylogo: false, responsive: true}});
}}
</script>
</body></html>
"""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
