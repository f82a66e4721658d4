"""Drop-in replacement for the reference platform's ``cdsw`` model-metrics calls.

An existing script runs after changing only its import line::

    import modelyard.cdsw as cdsw      # was: import cdsw

The functions are Modelyard's own (see ``modelyard.tracking``), with the reference's names,
signatures and return shapes: ``track_metric``, ``track_metrics``, ``model_metrics``,
``read_metrics``, ``track_delayed_metrics``, ``track_aggregate_metrics`` and ``call_model``.
Differences a script may notice: bad values (NaN, non-JSON objects, oversized records) raise
``InvalidInput``/``PayloadTooLarge`` instead of failing later; tracking outside a model warns once
instead of doing nothing silently; ``read_metrics`` also accepts ``limit`` and ``page_token``.
"""

from __future__ import annotations

from modelyard.tracking import (
    call_model,
    model_metrics,
    read_metrics,
    track_aggregate_metrics,
    track_delayed_metrics,
    track_metric,
    track_metrics,
)

__all__ = [
    "call_model",
    "model_metrics",
    "read_metrics",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_metric",
    "track_metrics",
]
