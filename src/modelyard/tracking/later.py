"""Metrics that arrive after the prediction: delayed (per prediction) and aggregate (per window).

Both are durable when the call returns: they go straight to the store (or the server), not
through the buffered writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, overload

from modelyard.errors import InvalidInput
from modelyard.store.base import DelayedBatch
from modelyard.tracking import backends
from modelyard.tracking.read import check_ms
from modelyard.tracking.validate import check_metrics, check_size, check_stored_ms

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["flush", "track_aggregate_metrics", "track_delayed_metrics"]


def flush() -> None:
    """Write every prediction record this process has buffered; returns once they are durable.

    Not needed before exit (buffered records are flushed then) nor before this process's own reads.
    """
    backends.flush_all()


@overload
def track_delayed_metrics(
    metrics: dict[str, Any], prediction_uuid: str, dev: bool = False
) -> None: ...


@overload
def track_delayed_metrics(
    metrics: pd.DataFrame | Iterable[tuple[str, dict[str, Any]]],
    prediction_uuid: None = None,
    dev: bool = False,
    *,
    uuid_column: str = "prediction_uuid",
) -> DelayedBatch: ...


def track_delayed_metrics(
    metrics: Any,
    prediction_uuid: str | None = None,
    dev: bool = False,
    *,
    uuid_column: str = "prediction_uuid",
) -> DelayedBatch | None:
    """Merge ``metrics`` into the record of prediction ``prediction_uuid`` (ground truth, errors).

    The process's writer is flushed first, so a prediction made moments ago by this process is
    found. Raises NotFound naming the uuid if no such prediction exists.

    Batch form, for many predictions at once (no ``prediction_uuid``): ``metrics`` is a list of
    ``(prediction_uuid, {key: value})`` pairs, or a DataFrame with the uuids in ``uuid_column``
    and one column per delayed metric (a null cell leaves that key out for that row). Stored in
    bulk (one transaction embedded; remotely in chunks that fit the server's body limit, one
    transaction each), and answered with ``DelayedBatch(stored, unknown, unchanged)``: uuids
    no stored prediction has are reported in ``unknown``, not raised.
    """
    if prediction_uuid is None and not isinstance(metrics, dict):
        items = _batch_items(metrics, uuid_column)
        backend = backends.select(dev)
        backend.flush()
        return backend.add_delayed_many(items, backends.source_string())
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
    return None


def _batch_items(metrics: Any, uuid_column: str) -> list[tuple[str, dict[str, Any]]]:
    """The batch form's (uuid, checked metrics) items, each checked as the single form checks
    its one (InvalidInput naming the row)."""
    import pandas as pd

    if isinstance(metrics, pd.DataFrame):
        if uuid_column not in metrics.columns:
            raise InvalidInput(
                f"the DataFrame has no column {uuid_column!r} of prediction uuids (columns: "
                f"{', '.join(map(str, metrics.columns[:20]))}); pass uuid_column=",
                column=uuid_column,
            )
        keys = [c for c in metrics.columns if c != uuid_column]
        rows = metrics[keys].astype(object).where(metrics[keys].notna(), None)
        pairs: Iterable[Any] = zip(
            metrics[uuid_column].tolist(),
            ({k: v for k, v in row.items() if v is not None} for row in rows.to_dict("records")),
            strict=True,
        )
    elif isinstance(metrics, (str, bytes, Mapping)) or not isinstance(metrics, Iterable):
        raise InvalidInput(
            "track_delayed_metrics takes (metrics dict, prediction_uuid), or for many "
            "predictions a list of (prediction_uuid, metrics dict) pairs or a DataFrame; "
            f"got {type(metrics).__name__} without a prediction_uuid"
        )
    else:
        pairs = metrics
    items: list[tuple[str, dict[str, Any]]] = []
    for n, pair in enumerate(pairs):
        try:
            uuid, values = pair
        except (TypeError, ValueError):
            raise InvalidInput(
                f"item {n} must be a (prediction_uuid, metrics dict) pair, got {pair!r:.80}"
            ) from None
        if not isinstance(uuid, str) or not uuid:
            raise InvalidInput(f"item {n}: prediction uuid {uuid!r:.80} is not a uuid string")
        try:
            checked = check_metrics(values)
            check_size(checked)
        except InvalidInput as exc:
            raise InvalidInput(f"item {n} (prediction {uuid!r}): {exc.message}") from None
        if not checked:
            raise InvalidInput(f"item {n} (prediction {uuid!r}) has no metric to store")
        items.append((uuid, checked))
    return items


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
