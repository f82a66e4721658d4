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

from modelyard.monitors.alerts import list_alerts
from modelyard.monitors.references import (
    MAX_ROWS,
    list_references,
    load_reference,
    upload_reference,
)
from modelyard.monitors.run import WindowResult, run_monitor
from modelyard.specs.monitor import METRICS, MonitorSpec, ReferenceWindow

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
