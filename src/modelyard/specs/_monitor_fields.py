"""The checks of the monitor spec's fields one by one (``modelyard.specs.monitor`` puts them
together): each names the field, the bad value and what is accepted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.analysis.alerts import parse_rule
from modelyard.analysis.thresholds import DEFAULT_THRESHOLDS
from modelyard.errors import InvalidInput
from modelyard.specs.monitor_outputs import closest, group_of_output
from modelyard.specs.notify import check_target
from modelyard.timeparse import parse_time_ms

__all__ = ["DEFAULT_METRICS", "DEFAULT_MINIMUM", "METRICS", "TASKS", "ReferenceWindow"]

METRICS = (
    "classification",
    "regression",
    "drift",
    "label_coverage",
    "prediction_drift",
    "estimated_performance",
    "multivariate_drift",  # not a default: it fits a classifier per window
    "segments",  # asked for by the field 'segments' (the columns), see monitors.segment_group
)
TASKS = ("classification", "regression")
# The metrics of a spec that does not list them, per task; and those a task may not ask for
# (a score's calibration-based estimate and ROC AUC mean nothing for a regression).
DEFAULT_METRICS = {
    "classification": (
        "classification",
        "drift",
        "label_coverage",
        "prediction_drift",
        "estimated_performance",
    ),
    "regression": ("regression", "drift", "label_coverage", "prediction_drift"),
}

# The default of ``min_labels`` and ``min_predictions``: below 30 rows a window's statistics are
# mostly noise (a ROC AUC from 4 labels is 1.0 or 0.0 as often as not; PSI over 10 bins expects
# about 9/n = 0.3 from sampling alone at n = 30), and 30 is the floor the ``segments`` group
# already keeps per segment (``monitors.segment_group.MIN_ROWS``).
DEFAULT_MINIMUM = 30


@dataclass(frozen=True, slots=True)
class ReferenceWindow:
    """An earlier window of the same deployment used as the reference: [start_ms, end_ms]."""

    start_ms: int
    end_ms: int


# -- field checks -------------------------------------------------------------------------------
def _text(data: Mapping[str, Any], name: str, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"monitor spec field {name!r} is missing; it is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            f"monitor spec field {name!r}={value!r} is not accepted; expected a non-empty string"
        )
    return value.strip()


def _names(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise InvalidInput(
            f"monitor spec field {name!r}={value!r} is not accepted; expected a list of "
            "non-empty strings"
        )
    if len(set(value)) != len(value):
        raise InvalidInput(f"monitor spec field {name!r}={value!r} repeats a name")
    return tuple(v.strip() for v in value)


def _reference(value: Any) -> tuple[str | None, ReferenceWindow | None]:
    accepted = (
        "{stored: <sample name>}, {window: {start: <time>, end: <time>}} or "
        "{connection: <name>, table | query | path: ...}"
    )
    if value is None:
        return None, None
    if not isinstance(value, Mapping) or len(value) != 1:
        raise InvalidInput(f"monitor spec field 'reference'={value!r} is not accepted; {accepted}")
    if "stored" in value:
        stored = value["stored"]
        if not isinstance(stored, str) or not stored.strip():
            raise InvalidInput(
                f"monitor spec field 'reference.stored'={stored!r} is not a sample name; "
                f"expected {accepted}"
            )
        return stored.strip(), None
    if "window" in value:
        window = value["window"]
        if not isinstance(window, Mapping) or set(window) != {"start", "end"}:
            raise InvalidInput(
                f"monitor spec field 'reference.window'={window!r} needs exactly 'start' and "
                "'end' (epoch ms, ISO 8601, or a duration before now such as 30d)"
            )
        start = parse_time_ms(str(window["start"]), "monitor spec field 'reference.window.start'")
        end = parse_time_ms(str(window["end"]), "monitor spec field 'reference.window.end'")
        if start >= end:
            raise InvalidInput(
                f"monitor spec field 'reference.window' starts at {start}, not before its end "
                f"{end}; give start < end"
            )
        return None, ReferenceWindow(start, end)
    hint = _did_you_mean([str(k) for k in value], ("stored", "window"))
    raise InvalidInput(
        f"monitor spec field 'reference'={value!r} is not accepted{hint}; {accepted}"
    )


def _thresholds(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    methods = sorted(DEFAULT_THRESHOLDS)
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"monitor spec field 'thresholds'={value!r} is not accepted; expected a mapping "
            f"of method to effect threshold, methods: {', '.join(methods)}"
        )
    out = {}
    for key, limit in value.items():
        if key not in DEFAULT_THRESHOLDS:
            raise InvalidInput(
                f"monitor spec field 'thresholds.{key}' is not a drift method"
                f"{_did_you_mean([str(key)], methods)}; accepted: {', '.join(methods)}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
            raise InvalidInput(
                f"monitor spec field 'thresholds.{key}'={limit!r} is not accepted; expected a "
                f"positive number (default {DEFAULT_THRESHOLDS[key]})"
            )
        out[str(key)] = float(limit)
    return out


def _alerts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise InvalidInput(
            f"monitor spec field 'alerts'={value!r} is not accepted; expected a list of rules "
            "such as 'roc_auc < 0.7'"
        )
    rules = []
    for i, text in enumerate(value):
        try:
            rules.append(parse_rule(text).text)
        except InvalidInput as exc:
            raise InvalidInput(f"monitor spec field 'alerts[{i}]': {exc.message}") from None
    return tuple(rules)


def _minimum(value: Any, name: str) -> int:
    """``min_labels`` / ``min_predictions``: a whole number of rows, at least 1."""
    if value is None:
        return DEFAULT_MINIMUM
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            f"monitor spec field {name!r}={value!r} is not accepted; expected a whole number "
            f"of predictions, at least 1 (default {DEFAULT_MINIMUM}; 1 computes every window "
            "whatever its size)"
        )
    return value


def _notify(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise InvalidInput(
            f"monitor spec field 'notify'={value!r} is not accepted; expected a list of "
            "http(s) webhook URLs or e-mail addresses"
        )
    for i, target in enumerate(value):
        try:
            check_target(target)
        except InvalidInput as exc:
            raise InvalidInput(f"monitor spec field 'notify[{i}]': {exc.message}") from None
    return tuple(str(t).strip() for t in value)


# -- metric groups -----------------------------------------------------------------------------
def _did_you_mean(names: Iterable[str], accepted: Iterable[str]) -> str:
    """``" (did you mean 'label_coverage'?)"`` for the first name with a close match, or ''."""
    options = list(accepted)
    for name in names:
        near = closest(name, options, 1)
        if near:
            return f" (did you mean {near[0]!r} for {name!r}?)"
    return ""


def _default_metrics(task: str, features: Any, reference: Any) -> tuple[str, ...]:
    """The task's default groups that the spec can feed: no ``drift`` without ``features``, no
    ``prediction_drift`` without a ``reference`` (features without a reference still ask for
    drift, and are refused for lacking the reference)."""
    return tuple(
        m
        for m in DEFAULT_METRICS[task]
        if not (m == "drift" and not features)
        and not (m == "prediction_drift" and reference is None)
    )


def _check_groups(metrics: tuple[str, ...]) -> None:
    """Each name in ``metrics`` is a metric group; a metric name gets the group that writes it."""
    if not metrics:
        raise InvalidInput(
            "monitor spec field 'metrics'=[] is empty; list metric groups from "
            f"{', '.join(METRICS)}"
        )
    for name in metrics:
        if name in METRICS:
            continue
        group = group_of_output(name)
        if group is not None:
            raise InvalidInput(
                f"monitor spec field 'metrics' names {name!r}, which is not a metric group: "
                f"{name!r} and the metrics next to it are outputs of {group!r}; write "
                f"{group!r} in 'metrics' (groups: {', '.join(METRICS)})"
            )
        near = closest(name, METRICS, 1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise InvalidInput(
            f"monitor spec field 'metrics' names {name!r}, which is not a metric group; "
            f"{hint}choose from {', '.join(METRICS)}"
        )
