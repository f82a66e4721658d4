"""Monitors: the analysis run window by window over a deployment, with alerts.

A ``MonitorSpec`` (YAML or Python) names a deployment, a reference, the features, the prediction
and label keys and a window length; ``run_monitor(spec)`` computes every window due, writes one
aggregate record per window (replaced, never duplicated, when a window is recomputed for late
labels, never by a result from less data), evaluates the spec's alert rules and notifies their
targets. ``python -m modelyard.monitors run SPEC`` does the same from a job, over HTTP with the
job's key when ``MODELYARD_URL`` is set (``modelyard.monitors.access``). Rolled-up windows get
drift from sketches (``modelyard.monitors.sketched``). See docs/monitors.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.monitors.alerts import list_alerts
from modelyard.monitors.references import (
    MAX_ROWS,
    list_references,
    load_reference,
    upload_reference,
)
from modelyard.specs.monitor import METRICS, MonitorSpec, ReferenceWindow

if TYPE_CHECKING:
    from modelyard.monitors.run import WindowResult, run_monitor

# ``run`` imports the analysis (scipy, scikit-learn: about 1 s) on first use, not with the
# package: the server imports ``monitors.access`` and its API routes at start, and runs no
# monitor until a job or a request asks for one.
_FROM_RUN = ("WindowResult", "run_monitor")


def __getattr__(name: str) -> Any:
    if name in _FROM_RUN:
        from modelyard.monitors import run

        return getattr(run, name)
    raise AttributeError(f"module 'modelyard.monitors' has no attribute {name!r}")


__all__ = [
    "MAX_ROWS",
    "METRICS",
    "MonitorSpec",
    "ReferenceWindow",
    "WindowResult",
    "list_alerts",
    "list_references",
    "load_reference",
    "run_monitor",
    "upload_reference",
]
