"""Drop-in replacement for the reference platform's ``cdsw`` model-metrics calls.

An existing script runs after changing only its import line::

    import modelyard.cdsw as cdsw      # was: import cdsw

The functions are Modelyard's own (see ``modelyard.tracking``), with the reference's names,
signatures and return shapes: ``track_metric``, ``track_metrics``, ``model_metrics``,
``read_metrics``, ``track_delayed_metrics``, ``track_aggregate_metrics``, ``call_model``
(the API key as keyword or third positional argument) and ``track_file``, plus the module
attribute ``dev_model_deployment_crn``, the deployment dev mode records under (the reference's
template scripts read it). ``read_metrics`` returns aggregate records with an empty
``predictionUuid`` (``""``), as the reference does; ``modelyard.read_metrics`` returns ``None``
there. Differences a script may notice: bad values (NaN, non-JSON objects, oversized records)
raise ``InvalidInput``/``PayloadTooLarge`` instead of failing later; tracking outside a model
warns once instead of doing nothing silently; ``read_metrics`` also accepts ``limit`` and
``page_token``.
"""

from __future__ import annotations

from typing import Any

from modelyard.tracking import (
    DEV_IDENTITY,
    call_model,
    model_metrics,
    track_aggregate_metrics,
    track_delayed_metrics,
    track_file,
    track_metric,
    track_metrics,
)
from modelyard.tracking import read_metrics as _read_metrics

__all__ = [
    "call_model",
    "dev_model_deployment_crn",
    "model_metrics",
    "read_metrics",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_file",
    "track_metric",
    "track_metrics",
]

#: The deployment CRN dev mode (``dev=True``, or nothing configured) records under.
dev_model_deployment_crn: str = DEV_IDENTITY.deployment_crn


def read_metrics(
    model_deployment_crn: str | None = None,
    start_timestamp_ms: int | None = None,
    end_timestamp_ms: int | None = None,
    model_crn: str | None = None,
    model_build_crn: str | None = None,
    dev: bool = False,
    limit: int | None = None,
    page_token: str | None = None,
) -> dict[str, Any]:
    """``modelyard.read_metrics`` with the reference's ``predictionUuid`` of aggregate records:
    an empty string rather than ``None``, so ``df[df.predictionUuid == ""]`` finds them."""
    answer = _read_metrics(
        model_deployment_crn,
        start_timestamp_ms,
        end_timestamp_ms,
        model_crn,
        model_build_crn,
        dev,
        limit=limit,
        page_token=page_token,
    )
    for record in answer["metrics"]:
        if record.get("predictionUuid") is None:
            record["predictionUuid"] = ""
    return answer
