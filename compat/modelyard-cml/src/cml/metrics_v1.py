"""``cml.metrics_v1``: the model-metrics calls, mapped onto ``modelyard.cdsw``.

``track_metric``, ``track_metrics``, ``read_metrics`` (aggregate records with an empty
``predictionUuid``), ``track_delayed_metrics``, ``track_aggregate_metrics`` and
``dev_model_deployment_crn`` are the very objects ``modelyard.cdsw`` offers.
"""

from __future__ import annotations

from modelyard.cdsw import (
    dev_model_deployment_crn,
    read_metrics,
    track_aggregate_metrics,
    track_delayed_metrics,
    track_metric,
    track_metrics,
)

__all__ = [
    "dev_model_deployment_crn",
    "read_metrics",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_metric",
    "track_metrics",
]
