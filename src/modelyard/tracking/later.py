"""Metrics that arrive after the prediction: delayed (per prediction) and aggregate (per window).

Both are durable when the call returns: they go straight to the store (or the server), not
through the buffered writer.
"""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidInput
from modelyard.tracking import backends
from modelyard.tracking.read import check_ms
from modelyard.tracking.validate import check_metrics, check_size, check_stored_ms

__all__ = ["flush", "track_aggregate_metrics", "track_delayed_metrics"]


def flush() -> None:
    """Write every prediction record this process has buffered; returns once they are durable.

    Not needed before exit (buffered records are flushed then) nor before this process's own reads.
    """
    backends.flush_all()


def track_delayed_metrics(metrics: dict[str, Any], prediction_uuid: str, dev: bool = False) -> None:
    """Merge ``metrics`` into the record of prediction ``prediction_uuid`` (ground truth, errors).

    The process's writer is flushed first, so a prediction made moments ago by this process is
    found. Raises NotFound naming the uuid if no such prediction exists.
    """
    checked = check_metrics(metrics)
    if not isinstance(prediction_uuid, str) or not prediction_uuid:
        raise InvalidInput(
            "prediction_uuid must be the uuid string returned by a @model_metrics call, "
            f"got {prediction_uuid!r:.80}"
        )
    check_size(checked)
    backend = backends.select(dev)
    backend.flush()
    backend.add_delayed(prediction_uuid, checked, backends.source_string())


def track_aggregate_metrics(
    metrics: dict[str, Any],
    start_timestamp_ms: int,
    end_timestamp_ms: int,
    model_deployment_crn: str | None = None,
    dev: bool = False,
) -> None:
    """Record metrics of the window [start, end] of a deployment (accuracy, drift, ...).

    The deployment defaults to the one this process records predictions under.
    """
    checked = check_metrics(metrics)
    start = check_stored_ms(
        check_ms(start_timestamp_ms, "start_timestamp_ms"), "start_timestamp_ms"
    )
    end = check_stored_ms(check_ms(end_timestamp_ms, "end_timestamp_ms"), "end_timestamp_ms")
    if start > end:
        raise InvalidInput(
            f"start_timestamp_ms={start} is after end_timestamp_ms={end}; "
            "an aggregate's window needs start <= end"
        )
    if model_deployment_crn is not None and (
        not isinstance(model_deployment_crn, str) or not model_deployment_crn
    ):
        raise InvalidInput(
            "model_deployment_crn must be a deployment CRN string or None (the current "
            f"deployment), got {model_deployment_crn!r:.80}"
        )
    check_size(checked)
    backend = backends.select(dev)
    deployment = model_deployment_crn or backend.identity.deployment_crn
    backend.add_aggregate(deployment, start, end, checked)
