"""What each metric group of a monitor writes: the names alert rules are checked against.

Declared here, next to the monitor spec that checks rules with them, so a rule that can never
fire (``rocauc < 0.7``) is refused when the spec is loaded; the groups that compute the values
(``modelyard.monitors``) import their names from here.

>>> produced = produced_metrics(OutputsOf(metrics=("classification",)))
>>> "roc_auc" in produced, group_of_output("psi.tenure")
(True, 'drift')
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modelyard.analysis.thresholds import DEFAULT_THRESHOLDS

__all__ = [
    "CLASSIFICATION_OUTPUTS",
    "COMMON_OUTPUTS",
    "GAP_METRICS",
    "GROUP_OUTPUTS",
    "INSUFFICIENT",
    "REGRESSION_OUTPUTS",
    "SEGMENT_METRICS",
    "OutputsOf",
    "closest",
    "group_of_output",
    "insufficient_groups",
    "matches",
    "multivariate_outputs",
    "produced_metrics",
    "segment_outputs",
]

# ``<group>.insufficient: true`` in a window's metrics: the group had fewer rows than the spec's
# ``min_labels`` / ``min_predictions`` and wrote none of its values (``<group>.reason`` says why).
INSUFFICIENT = "insufficient"

CLASSIFICATION_OUTPUTS = (
    "roc_auc",
    "roc_auc_ci_low",
    "roc_auc_ci_high",
    "pr_auc",
    "log_loss",
    "brier",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "ece",
    "positives",
)
REGRESSION_OUTPUTS = (
    *(
        f"{name}{end}"
        for name in ("mae", "rmse", "mape", "r2")
        for end in ("", "_ci_low", "_ci_high")
    ),
    "mape_excluded_zeros",
)
ESTIMATED_OUTPUTS = tuple(
    f"estimated_{k}" for k in ("roc_auc", "accuracy", "precision", "recall", "f1")
)
LABEL_COVERAGE_OUTPUTS = (
    "label_coverage",
    "labelled",
    *(f"label_delay_{q}_ms" for q in ("p50", "p90", "p99", "mean", "max")),
)
# Written for every window whatever the groups (``n``: predictions in the window).
COMMON_OUTPUTS = ("n",)
# Per task: the metrics the ``segments`` group computes per segment, and those whose gap across
# segments it writes (``modelyard.monitors.segment_group``).
SEGMENT_METRICS = {
    "classification": ("roc_auc", "accuracy", "recall", "selection_rate"),
    "regression": ("mae", "rmse"),
}
GAP_METRICS = SEGMENT_METRICS
# The fixed keys of the ``multivariate_drift`` group (``modelyard.monitors.multivariate_group``).
MULTIVARIATE_FIXED = (
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "auc_std",
    "flagged",
    "threshold",
    "n_reference",
    "n_current",
)


class Outputs(Protocol):
    """What the output names of a spec depend on (a ``MonitorSpec`` has these)."""

    @property
    def features(self) -> tuple[str, ...]: ...
    @property
    def segments(self) -> tuple[str, ...]: ...
    @property
    def task(self) -> str: ...
    @property
    def metrics(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class OutputsOf:
    """The parts of a spec that outputs depend on, for asking about names without a spec."""

    features: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    task: str = "classification"
    metrics: tuple[str, ...] = ()


def segment_outputs(columns: Sequence[str], task: str) -> tuple[str, ...]:
    """The keys (globs where a segment's value stands) the group writes for ``columns``."""
    metrics = SEGMENT_METRICS[task]
    out: list[str] = []
    for column in columns:
        out += [f"segments.{column}.*.n", f"segments.{column}.*.labelled"]
        out += [f"segments.{column}.*.{m}" for m in metrics]
        out += [f"fairness.{column}.gap.{m}" for m in GAP_METRICS[task]]
    out += [f"fairness.gap.{m}" for m in GAP_METRICS[task]]
    return tuple(out)


def multivariate_outputs(features: Sequence[str]) -> tuple[str, ...]:
    """The numeric keys the group writes (and ``top_features``, a list of names, besides)."""
    fixed = [f"multivariate_drift.{k}" for k in MULTIVARIATE_FIXED]
    return (*fixed, *(f"multivariate_drift.importance.{f}" for f in features))


def _drift_outputs(spec: Outputs) -> tuple[str, ...]:
    features = spec.features or ("*",)
    return (
        *(f"{method}.{f}" for method in DEFAULT_THRESHOLDS for f in features),
        "drift.flagged",
        "drift.ks_error_bound",
        "drift.share_error_bound",
    )


GROUP_OUTPUTS: dict[str, Callable[[Outputs], Iterable[str]]] = {
    "classification": lambda spec: CLASSIFICATION_OUTPUTS,
    "regression": lambda spec: REGRESSION_OUTPUTS,
    "label_coverage": lambda spec: LABEL_COVERAGE_OUTPUTS,
    "estimated_performance": lambda spec: ESTIMATED_OUTPUTS,
    "drift": _drift_outputs,
    "prediction_drift": lambda spec: (
        *(f"prediction_drift.{method}" for method in DEFAULT_THRESHOLDS),
        "prediction_drift.flagged",
    ),
    "segments": lambda spec: segment_outputs(spec.segments or ("*",), spec.task),
    "multivariate_drift": lambda spec: multivariate_outputs(spec.features or ("*",)),
}
"""The numeric metric names each metric group writes for a spec: what alert rules are checked
against (``MonitorSpec``'s check of its alerts), so a rule that can never fire (``rocauc < 0.7``)
is refused when the spec is loaded, with the closest produced name.

A new metric group registers here, next to its entry in ``specs.monitor.METRICS``:
``GROUP_OUTPUTS["segments"] = lambda spec: (f"fairness.gap.{m}" ..., "segments.*.roc_auc")``.
Names may hold fnmatch wildcards (``*``) for the parts only the data knows (a segment's value);
a group missing from this mapping is not checked (its rules are accepted as written)."""


def produced_metrics(spec: Outputs) -> tuple[str, ...]:
    """Every metric name (or fnmatch pattern) the spec's metric groups write."""
    names = list(COMMON_OUTPUTS)
    for group in spec.metrics:
        outputs = GROUP_OUTPUTS.get(group)
        if outputs is not None:
            names.extend(outputs(spec))
    return tuple(dict.fromkeys(names))


def matches(name: str, pattern: str) -> bool:
    """Whether a metric name and a produced name can be the same metric (either may be a
    pattern: a rule's ``psi.*`` matches ``psi.tenure``, a produced ``segments.*.f1`` matches a
    rule's ``segments.north.f1``)."""
    return fnmatch.fnmatchcase(name.replace("*", "x"), pattern) or fnmatch.fnmatchcase(
        pattern.replace("*", "x"), name
    )


def group_of_output(name: str, spec: Outputs | None = None) -> str | None:
    """The metric group (of all known) whose outputs include ``name``, if any."""
    probe = spec or OutputsOf()
    for group, outputs in GROUP_OUTPUTS.items():
        if any(matches(name, o) for o in outputs(probe)):
            return group
    return None


def closest(name: str, accepted: Iterable[str], n: int = 3) -> list[str]:
    """The accepted names closest to ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, list(accepted), n=n, cutoff=0.6)


def insufficient_groups(metrics: Mapping[str, Any]) -> dict[str, str]:
    """The metric groups a window's ``metrics`` mark insufficient, each with its reason."""
    end = "." + INSUFFICIENT
    return {
        key[: -len(end)]: str(metrics.get(key[: -len(end)] + ".reason"))
        for key, value in metrics.items()
        if key.endswith(end) and value is True
    }
