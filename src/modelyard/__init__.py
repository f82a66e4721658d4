"""Modelyard: deploy Python functions, record every prediction, join late ground truth, monitor.

The tracking SDK is available at the top level::

    import modelyard

    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("input", args)
        return {"score": 0.7}

Heavy libraries (pandas, psycopg, httpx) are imported only by the calls that need them, so
``import modelyard`` stays cheap inside every replica.
"""

from __future__ import annotations

from modelyard import errors
from modelyard.jobs.current import CurrentRun, current_run
from modelyard.tracking import (
    NotRecordedWarning,
    call_model,
    current_identity,
    flush,
    iter_metrics,
    model_metrics,
    read_metrics,
    read_metrics_frame,
    track_aggregate_metrics,
    track_delayed_metrics,
    track_metric,
    track_metrics,
)

__version__ = "0.1.0"

__all__ = [
    "CurrentRun",
    "NotRecordedWarning",
    "__version__",
    "call_model",
    "current_identity",
    "current_run",
    "errors",
    "flush",
    "iter_metrics",
    "model_metrics",
    "read_metrics",
    "read_metrics_frame",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_metric",
    "track_metrics",
]
