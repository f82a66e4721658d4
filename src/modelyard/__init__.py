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

from typing import TYPE_CHECKING, Any

from modelyard import errors
from modelyard.tracking import (
    NotRecordedWarning,
    call_model,
    current_identity,
    flush,
    iter_metrics,
    model_metrics,
    read_distribution,
    read_metrics,
    read_metrics_frame,
    track_aggregate_metrics,
    track_delayed_metrics,
    track_file,
    track_metric,
    track_metrics,
)

__version__: str  # from the installed metadata on first use (modelyard.version), see __getattr__


def upload_reference(
    frame: Any, deployment_crn: str, name: str = "training", **options: Any
) -> dict[str, Any]:
    """Store a training sample (a pandas DataFrame) as the reference monitors compare against.

    See ``modelyard.monitors.upload_reference`` (at most 100,000 rows are kept, sampled). Imported
    on call, so ``import modelyard`` stays free of pandas.
    """
    from modelyard.monitors.references import upload_reference as upload

    return upload(frame, deployment_crn, name, **options)


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
    "read_distribution",
    "read_metrics",
    "read_metrics_frame",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_file",
    "track_metric",
    "track_metrics",
    "upload_reference",
]

if TYPE_CHECKING:
    from modelyard.jobs.current import CurrentRun, current_run


def __getattr__(name: str) -> Any:
    """``current_run`` and ``CurrentRun`` load on first use: ``modelyard.jobs`` brings the cron
    library along, which a replica that never asks should not pay for at import. So does
    ``__version__`` (reading the installed metadata imports ``importlib.metadata``)."""
    if name in ("CurrentRun", "current_run"):
        from modelyard.jobs import current

        return getattr(current, name)
    if name == "__version__":
        from modelyard.version import package_version

        return package_version()
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
