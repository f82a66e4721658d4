"""``track_metric`` and ``track_metrics``: attach values to the prediction being computed.

Inside a ``model_metrics``-decorated call the values go into that call's record. Outside one,
inside a job run (``MODELYARD_RUN_ID`` set), they are recorded as run metrics through the backend;
in an experiment run (``MODELYARD_EXPERIMENT=1`` too) each value must be a scalar (int, finite
float, bool or str; numpy scalars are converted), since runs are compared metric by metric.
Anywhere else there is nothing to attach them to: the reference platform drops them silently; here
a ``NotRecordedWarning`` says so, once per process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import orjson

from modelyard.errors import InvalidInput
from modelyard.tracking import backends, context
from modelyard.tracking._env import EXPERIMENT_ENV
from modelyard.tracking.validate import (
    check_key,
    check_metrics,
    check_size,
    check_value,
    max_record_bytes,
)

__all__ = ["NotRecordedWarning", "track_metric", "track_metrics"]


_SCALARS = (bool, int, float, str)


class NotRecordedWarning(UserWarning):
    """A metric was tracked outside any prediction or job run, so it was not recorded."""


_warned = False


def _not_recorded(keys: list[str]) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        NotRecordedWarning(
            f"metrics {keys} were not recorded: track_metric only records inside a function "
            "decorated with @model_metrics or inside a job run (MODELYARD_RUN_ID set); use "
            "track_aggregate_metrics for metrics of a time window. This warning is shown once."
        ),
        stacklevel=3,
    )


def _add(ctx: context.PredictionContext, values: dict[str, Any]) -> None:
    """Merge already-checked values into the record, enforcing the size limit.

    The running estimate adds each key and value's encoded length, so it only overstates (a key
    tracked twice is counted twice); the exact size is computed only when the estimate crosses the
    limit, which keeps the common case at one small ``orjson.dumps`` per value.
    """
    estimate = ctx.size_estimate
    for key, value in values.items():
        estimate += len(key) + len(orjson.dumps(value)) + 4
    limit = max_record_bytes()
    if estimate > limit:
        candidate = {**ctx.metrics, **values}
        estimate = check_size(candidate, limit)
    ctx.metrics.update(values)
    ctx.size_estimate = estimate


def track_metric(key: str, value: Any) -> None:
    """Track ``{key: value}`` on the current prediction (or job run). ``value``: any JSON value."""
    checked = check_value(value, check_key(key))
    ctx = context.current()
    if ctx is not None:
        # _add inlined for the one-key case: this runs inside every prediction.
        estimate = ctx.size_estimate + len(key) + len(orjson.dumps(checked)) + 4
        limit = max_record_bytes()
        if estimate > limit:
            estimate = check_size({**ctx.metrics, key: checked}, limit)
        ctx.metrics[key] = checked
        ctx.size_estimate = estimate
        return
    _outside({key: checked})


def track_metrics(metrics: Mapping[str, Any]) -> None:
    """Track several metrics at once; all are checked before any is added."""
    checked = check_metrics(metrics)
    ctx = context.current()
    if ctx is not None:
        _add(ctx, checked)
        return
    _outside(checked)


def _check_experiment(metrics: dict[str, Any]) -> None:
    """An experiment run's metrics are compared across runs: one scalar per key and call."""
    for key, value in metrics.items():
        if value is None or not isinstance(value, _SCALARS):
            raise InvalidInput(
                f"metric {key!r} of an experiment run is {value!r:.80} "
                f"({type(value).__name__}); experiment metrics are scalars: int, finite float, "
                "bool or str (numpy scalars are converted); track a list or dict inside a "
                "@model_metrics prediction, or one metric per element"
            )


def _outside(metrics: dict[str, Any]) -> None:
    run_id = os.environ.get(backends.RUN_ID_ENV)
    if run_id:
        if os.environ.get(EXPERIMENT_ENV) == "1":
            _check_experiment(metrics)
        check_size(metrics)
        backends.select().track_run_metrics(run_id, metrics)
        return
    _not_recorded(list(metrics))
