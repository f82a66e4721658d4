"""What the story produced, read back through the product: windows, latency, alerts, checks.

Everything here comes from the running server (``GET /api/v1/metrics`` for the monitor's and the
gateway's aggregate records, ``GET /api/v1/alerts``), from the CRM (the web app's own round-trip
times) and from the webhook receiver: the report and the summary show what a user would find.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from modelyard.demo.crm import Crm
from modelyard.demo.generator import FEATURES
from modelyard.demo.receiver import WebhookReceiver

__all__ = ["StoryResults", "Window", "collect", "psi_matrix"]


@dataclass
class Window:
    """One monitor window as its aggregate record says, plus the web app's latencies in it."""

    start_ms: int
    end_ms: int
    drifted: bool  # after the injection
    metrics: dict[str, Any]
    latency_ms: dict[str, float] = field(default_factory=dict)

    def value(self, key: str) -> float:
        v = self.metrics.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan

    @property
    def flagged(self) -> list[str]:
        return [str(f) for f in self.metrics.get("drift.flagged_features") or []]


@dataclass
class StoryResults:
    info: dict[str, Any]
    windows: list[Window]
    tech: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    received: list[dict[str, Any]]
    report: Path | None = None
    seconds: float = math.nan

    @property
    def before(self) -> list[Window]:
        return [w for w in self.windows if not w.drifted]

    @property
    def after(self) -> list[Window]:
        return [w for w in self.windows if w.drifted]

    def expected_window_starts(self) -> list[int]:
        """The windows' grid: traffic starts on a window boundary, one window after another."""
        info = self.info
        count = int(info["windows_before"]) + int(info["windows_after"])
        return [int(info["traffic_start_ms"]) + i * int(info["window_ms"]) for i in range(count)]

    @property
    def replicas_served(self) -> dict[str, int]:
        """Calls answered per replica (the ``ReplicaID`` of each answer)."""
        return {str(k): int(v) for k, v in self.info.get("replicas_served", {}).items() if k}

    def checks(self) -> dict[str, bool]:
        """The story's claims, each checked against what was read back."""
        return {
            # Every window of the grid, none missing or empty (collect keeps windows with n > 0).
            "ROC AUC computed for every window": [w.start_ms for w in self.windows]
            == self.expected_window_starts()
            and all(not math.isnan(w.value("roc_auc")) for w in self.windows),
            "no drift flagged before the injection": bool(self.before)
            and all(not w.flagged for w in self.before),
            "drift flagged after the injection": bool(self.after)
            and all(w.flagged for w in self.after),
            "an alert reached the webhook": any(
                r.get("kind") == "modelyard.alert" for r in self.received
            ),
            "every replica served calls": len(self.replicas_served)
            == int(self.info.get("replicas", 0))
            and all(n > 0 for n in self.replicas_served.values()),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything shown, as JSON-ready data (the story writes it next to the report)."""
        return {
            "info": self.info,
            "seconds": self.seconds,
            "checks": self.checks(),
            "windows": [
                {
                    "start_ms": w.start_ms,
                    "end_ms": w.end_ms,
                    "drifted": w.drifted,
                    "metrics": w.metrics,
                    "latency_ms": w.latency_ms,
                }
                for w in self.windows
            ],
            "tech": self.tech,
            "alerts": self.alerts,
            "received": self.received,
            "report": str(self.report) if self.report else None,
        }

    def summary_text(self) -> str:
        info = self.info
        lines = [
            "",
            f"[bold]The churn story, told in {self.seconds:.0f} s[/]",
            f"  server      {info['url']}  (home {info['home']})",
            f"  model       {info['model']} ({len(self.replicas_served)} replicas served calls: "
            f"{', '.join(f'{r} {n}' for r, n in sorted(self.replicas_served.items()))})",
            f"  deployment  {info['deployment']}",
            f"  calls       {info.get('calls', 0)} through POST /model; "
            f"{info.get('crm_counts', {}).get('churn_events', 0)} churn events in the CRM",
        ]
        for label, group in (("before drift", self.before), ("after drift", self.after)):
            aucs = [w.value("roc_auc") for w in group]
            flagged = sorted({f for w in group for f in w.flagged})
            lines.append(
                f"  {label:<14}{len(group)} windows, ROC AUC "
                f"{_range(aucs)}, drift flagged in {sum(bool(w.flagged) for w in group)} "
                f"({', '.join(flagged[:5]) or 'none'}{', ...' if len(flagged) > 5 else ''})"
            )
        rules = sorted({str(a.get("rule")) for a in self.alerts})
        hooks = sum(r.get("kind") == "modelyard.alert" for r in self.received)
        lines.append(f"  alerts      {', '.join(rules) or 'none'}; {hooks} webhook call(s)")
        for claim, ok in self.checks().items():
            lines.append(f"  {'[green]ok[/]  ' if ok else '[red]NOT[/] '} {claim}")
        home = info["home"]
        lines += [
            "\n[bold]Look inside[/] (the home is kept):",
            f"  MODELYARD_HOME={home} modelyard server      # dashboard at /ui/, key in admin.key",
            f"  MODELYARD_HOME={home} modelyard alerts --all",
            f"  MODELYARD_HOME={home} modelyard metrics read --deployment {info['deployment']} "
            "--since 1h --format csv",
        ]
        if self.report is not None:
            lines.append(f"\n[bold]Report:[/] {self.report}")
        return "\n".join(lines)


def _range(values: list[float]) -> str:
    real = [v for v in values if not math.isnan(v)]
    if not real:
        return "n/a"
    return f"{min(real):.2f}-{max(real):.2f}"


def collect(
    url: str, admin_key: str, info: dict[str, Any], receiver: WebhookReceiver
) -> StoryResults:
    deployment = info["deployment"]
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=60.0
    ) as api:
        records = _aggregates(api, deployment)
        answer = api.get("/api/v1/alerts", params={"all": "true", "deployment": deployment})
        answer.raise_for_status()
        alerts = list(answer.json()["alerts"])
    monitor = [r for r in records if "n" in r["metrics"] and r["metrics"].get("n")]
    tech = [
        {"start_ms": r["startTimeStampMs"], "end_ms": r["endTimeStampMs"], **r["metrics"]}
        for r in records
        if "tech.requests" in r["metrics"]
    ]
    windows = [
        Window(
            int(r["startTimeStampMs"]),
            int(r["endTimeStampMs"]),
            int(r["startTimeStampMs"]) >= int(info["injected_ms"]),
            dict(r["metrics"]),
        )
        for r in sorted(monitor, key=lambda r: int(r["startTimeStampMs"]))
        if int(info["traffic_start_ms"]) <= int(r["startTimeStampMs"]) < int(info["traffic_end_ms"])
    ]
    _add_latencies(windows, Path(info["crm"]))
    received = [r for r in receiver.received if r.get("kind") == "modelyard.alert"]
    return StoryResults(info, windows, sorted(tech, key=lambda t: t["start_ms"]), alerts, received)


def _aggregates(api: httpx.Client, deployment: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"modelDeploymentCrn": deployment, "kind": "aggregate"}
        if token:
            params["pageToken"] = token
        answer = api.get("/api/v1/metrics", params=params)
        answer.raise_for_status()
        page = answer.json()
        found.extend(page["metrics"])
        token = page.get("nextPageToken")
        if not token:
            return found


def _add_latencies(windows: list[Window], crm_path: Path) -> None:
    crm = Crm(crm_path)
    try:
        rows = crm.latencies()
    finally:
        crm.close()
    if not rows:
        return
    times = np.array([t for t, _ in rows])
    values = np.array([v for _, v in rows])
    for w in windows:
        inside = values[(times >= w.start_ms) & (times < w.end_ms)]
        if inside.size:
            p50, p90, p99 = np.percentile(inside, [50, 90, 99])
            w.latency_ms = {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def psi_matrix(windows: list[Window]) -> tuple[list[str], list[list[float]]]:
    """Features x windows PSI (NaN where missing), the heatmap's data."""
    return list(FEATURES), [[w.value(f"psi.{f}") for w in windows] for f in FEATURES]
