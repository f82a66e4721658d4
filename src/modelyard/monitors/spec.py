"""A monitor spec: what to watch (a deployment), against what (a reference), how often (windows).

Written as a small YAML file or built in Python; both go through ``MonitorSpec.from_dict``, which
checks every field and names it in its error, so a typo in a spec fails when it is loaded, not
an hour later inside a job::

    name: churn
    deployment: crn:modelyard:deployment/...     # or  model: churn  (its active deployment)
    reference: {stored: training}                # or  {window: {start: ..., end: ...}}
    features: [tenure, monthly_charges, plan]
    categorical: [plan]
    segments: [region, contract]                 # metrics per segment and their largest gaps
    prediction: probability
    label: churned
    task: classification                         # or regression (MAE, RMSE, MAPE, R²)
    positive_label: 1
    window: 1h
    metrics: [classification, drift, label_coverage, prediction_drift, estimated_performance]
    thresholds: {psi: 0.2}
    alerts: ["roc_auc < 0.7", "drift.flagged > 0"]
    notify: ["http://127.0.0.1:9000/hook"]
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.analysis import DEFAULT_THRESHOLDS, parse_rule
from modelyard.errors import InvalidInput
from modelyard.monitors.multivariate_group import multivariate_outputs
from modelyard.monitors.segment_group import segment_outputs
from modelyard.settings import parse_duration_ms
from modelyard.timeparse import parse_time_ms

__all__ = [
    "DEFAULT_METRICS",
    "GROUP_OUTPUTS",
    "METRICS",
    "TASKS",
    "MonitorSpec",
    "ReferenceWindow",
    "closest",
    "group_of_output",
    "produced_metrics",
]

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
_TASK_REFUSES = {
    "classification": ("regression",),
    "regression": ("classification", "estimated_performance"),
}
_FIELDS = (
    "name",
    "deployment",
    "model",
    "reference",
    "features",
    "categorical",
    "segments",
    "prediction",
    "label",
    "task",
    "positive_label",
    "window",
    "start",
    "metrics",
    "thresholds",
    "alerts",
    "notify",
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_MIN_WINDOW_MS = 1000


@dataclass(frozen=True, slots=True)
class ReferenceWindow:
    """An earlier window of the same deployment used as the reference: [start_ms, end_ms]."""

    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class MonitorSpec:
    """A checked monitor spec. Exactly one of ``deployment`` and ``model`` is set; exactly one of
    ``reference_stored`` (a sample name) and ``reference_window`` when a reference is needed."""

    name: str
    prediction: str
    window_ms: int
    deployment: str | None = None
    model: str | None = None
    reference_stored: str | None = None
    reference_window: ReferenceWindow | None = None
    features: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()  # columns of the ``segments`` group (monitors.segment_group)
    label: str | None = None
    task: str = "classification"
    positive_label: Any = 1
    start_ms: int | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS["classification"]
    thresholds: Mapping[str, float] = field(default_factory=dict)
    alerts: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    # False when ``metrics`` are the defaults: a default group the data cannot feed (a reference
    # without the prediction column) is then a warning, not an error about what nobody wrote.
    metrics_given: bool = field(default=True, compare=False, repr=False)

    @property
    def source(self) -> str:
        """The ``source`` of this monitor's aggregate records (see ``replace_aggregate``)."""
        return f"monitor:{self.name}"

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> MonitorSpec:
        """Load and check a YAML spec; InvalidInput names the file and the field at fault."""
        import yaml

        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(
                f"monitor spec {str(file)!r} cannot be read ({exc.strerror or exc}); "
                "pass the path of a YAML file"
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(
                f"monitor spec {str(file)!r} is not valid YAML ({exc}); write a mapping of "
                f"fields such as name, deployment, window"
            ) from exc
        if not isinstance(data, dict):
            raise InvalidInput(
                f"monitor spec {str(file)!r} holds a {type(data).__name__}, not a mapping; "
                f"write fields such as name: ..., deployment: ..., window: 1h"
            )
        if "name" not in data:
            data = {"name": file.stem.lower(), **data}
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorSpec:
        """Check ``data`` field by field; InvalidInput names the field and what is accepted."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a monitor spec must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS), key=str)
        if unknown:
            raise InvalidInput(
                f"monitor spec field(s) {unknown!r} are not known"
                f"{_did_you_mean([str(u) for u in unknown], _FIELDS)}; accepted: "
                f"{', '.join(_FIELDS)}"
            )
        name = _text(data, "name", required=True)
        assert name is not None
        if not _NAME.match(name):
            raise InvalidInput(
                f"monitor spec field 'name'={name!r} is not accepted; use lower-case letters, "
                "digits, '.', '_' or '-' (at most 63, starting with a letter or digit)"
            )
        deployment = _text(data, "deployment")
        model = _text(data, "model")
        if (deployment is None) == (model is None):
            raise InvalidInput(
                "monitor spec needs exactly one of the fields 'deployment' (a CRN) and 'model' "
                f"(a model name, monitored through its active deployment); got deployment="
                f"{deployment!r}, model={model!r}"
            )
        if deployment is not None and not deployment.startswith("crn:"):
            raise InvalidInput(
                f"monitor spec field 'deployment'={deployment!r} is not a CRN; expected "
                "'crn:modelyard:deployment/<uuid>'"
            )
        prediction = _text(data, "prediction", required=True)
        assert prediction is not None
        window_raw = data.get("window")
        if window_raw is None:
            raise InvalidInput(
                "monitor spec field 'window' is missing; give the window length, e.g. 1h or 1d"
            )
        try:
            window_ms = parse_duration_ms(str(window_raw), "monitor spec field 'window'")
        except InvalidInput as exc:
            raise InvalidInput(exc.message) from None
        if window_ms < _MIN_WINDOW_MS:
            raise InvalidInput(
                f"monitor spec field 'window'={window_raw!r} is shorter than 1s; use e.g. 1h"
            )
        features = _names(data, "features")
        categorical = _names(data, "categorical")
        stray = [c for c in categorical if c not in features]
        if stray:
            raise InvalidInput(
                f"monitor spec field 'categorical' names {stray!r}, which are not in 'features' "
                f"{list(features)!r}; list each categorical feature in 'features' too"
            )
        task = _text(data, "task") or "classification"
        if task not in TASKS:
            raise InvalidInput(
                f"monitor spec field 'task'={task!r} is not accepted"
                f"{_did_you_mean([task], TASKS)}; choose from {', '.join(TASKS)}"
            )
        metrics = (
            _names(data, "metrics")
            if "metrics" in data
            else _default_metrics(task, data.get("features"), data.get("reference"))
        )
        _check_groups(metrics)
        # What a message says of metrics the user did not write.
        chosen = "" if "metrics" in data else " (the default metrics: 'metrics' is not given)"
        wrong = [m for m in metrics if m in _TASK_REFUSES[task]]
        if wrong:
            raise InvalidInput(
                f"monitor spec field 'metrics' asks for {wrong!r}, which a {task} monitor does "
                f"not compute; for task {task!r} choose from "
                f"{', '.join(m for m in METRICS if m not in _TASK_REFUSES[task])}"
            )
        label = _text(data, "label")
        needs_label = [
            m for m in metrics if m in ("classification", "regression", "label_coverage")
        ]
        if needs_label and label is None:
            raise InvalidInput(
                f"monitor spec asks for {needs_label!r}{chosen} but has no field 'label'; name "
                "the delayed metric holding the ground truth, or list only metric groups that "
                "need no label in 'metrics' (e.g. [estimated_performance])"
            )
        segments = _names(data, "segments")
        if segments and "segments" not in metrics:
            metrics = (*metrics, "segments")  # the field is what asks for the group
        if "segments" in metrics and not segments:
            raise InvalidInput(
                "monitor spec field 'metrics' asks for 'segments' but field 'segments' is empty; "
                "list the columns to split each window by, e.g. segments: [region, contract]"
            )
        if "multivariate_drift" in metrics and len(features) < 2:
            raise InvalidInput(
                f"monitor spec asks for 'multivariate_drift' but field 'features' lists "
                f"{list(features)!r}; it needs at least 2 features (how they move together), "
                "or drop 'multivariate_drift' from 'metrics'"
            )
        if "drift" in metrics and not features:
            raise InvalidInput(
                "monitor spec asks for 'drift' but field 'features' is empty; list the input "
                "keys to compare with the reference, or drop 'drift' from 'metrics'"
            )
        positive = data.get("positive_label", 1)
        if not isinstance(positive, str | int | float | bool):
            raise InvalidInput(
                f"monitor spec field 'positive_label'={positive!r} is not accepted; give the "
                "label value that means the positive class, e.g. 1, true or 'churned'"
            )
        stored, window = _reference(data.get("reference"))
        if (stored is None and window is None) and (
            "drift" in metrics or "prediction_drift" in metrics or "multivariate_drift" in metrics
        ):
            raise InvalidInput(
                f"monitor spec asks for drift{chosen} but has no field 'reference'; give "
                "{stored: <sample name>} or {window: {start: ..., end: ...}}"
            )
        start_ms = None
        if data.get("start") is not None:
            start_ms = parse_time_ms(str(data["start"]), "monitor spec field 'start'")
        spec = cls(
            name=name,
            prediction=prediction,
            window_ms=window_ms,
            deployment=deployment,
            model=model,
            reference_stored=stored,
            reference_window=window,
            features=features,
            categorical=categorical,
            segments=segments,
            label=label,
            task=task,
            positive_label=positive,
            start_ms=start_ms,
            metrics=metrics,
            thresholds=_thresholds(data.get("thresholds")),
            alerts=_alerts(data.get("alerts")),
            notify=_notify(data.get("notify")),
            metrics_given="metrics" in data,
        )
        _check_alert_metrics(spec)
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The spec as YAML-ready plain values; ``from_dict(spec.to_dict()) == spec``."""
        out: dict[str, Any] = {"name": self.name}
        if self.deployment is not None:
            out["deployment"] = self.deployment
        if self.model is not None:
            out["model"] = self.model
        if self.reference_stored is not None:
            out["reference"] = {"stored": self.reference_stored}
        elif self.reference_window is not None:
            w = self.reference_window
            out["reference"] = {"window": {"start": w.start_ms, "end": w.end_ms}}
        out["features"] = list(self.features)
        out["categorical"] = list(self.categorical)
        if self.segments:
            out["segments"] = list(self.segments)
        out["prediction"] = self.prediction
        if self.label is not None:
            out["label"] = self.label
        out["task"] = self.task
        out["positive_label"] = self.positive_label
        out["window"] = f"{self.window_ms}ms"
        if self.start_ms is not None:
            out["start"] = self.start_ms
        out["metrics"] = list(self.metrics)
        out["thresholds"] = dict(self.thresholds)
        out["alerts"] = list(self.alerts)
        out["notify"] = list(self.notify)
        return out


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
    accepted = "{stored: <sample name>} or {window: {start: <time>, end: <time>}}"
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


def _notify(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    from modelyard.jobs.notify import check_target

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


# -- metric groups and what they produce --------------------------------------------------------

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


def _drift_outputs(spec: MonitorSpec) -> tuple[str, ...]:
    features = spec.features or ("*",)
    return (
        *(f"{method}.{f}" for method in DEFAULT_THRESHOLDS for f in features),
        "drift.flagged",
        "drift.ks_error_bound",
        "drift.share_error_bound",
    )


GROUP_OUTPUTS: dict[str, Callable[[MonitorSpec], Iterable[str]]] = {
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
against (``_check_alert_metrics``), so a rule that can never fire (``rocauc < 0.7``) is refused
when the spec is loaded, with the closest produced name.

A new metric group registers here, next to its entry in ``METRICS``:
``GROUP_OUTPUTS["segments"] = lambda spec: (f"fairness.gap.{m}" ..., "segments.*.roc_auc")``.
Names may hold fnmatch wildcards (``*``) for the parts only the data knows (a segment's value);
a group missing from this mapping is not checked (its rules are accepted as written)."""


def produced_metrics(spec: MonitorSpec) -> tuple[str, ...]:
    """Every metric name (or fnmatch pattern) the spec's metric groups write."""
    names = list(COMMON_OUTPUTS)
    for group in spec.metrics:
        outputs = GROUP_OUTPUTS.get(group)
        if outputs is not None:
            names.extend(outputs(spec))
    return tuple(dict.fromkeys(names))


def _matches(name: str, pattern: str) -> bool:
    """Whether a metric name and a produced name can be the same metric (either may be a
    pattern: a rule's ``psi.*`` matches ``psi.tenure``, a produced ``segments.*.f1`` matches a
    rule's ``segments.north.f1``)."""
    return fnmatch.fnmatchcase(name.replace("*", "x"), pattern) or fnmatch.fnmatchcase(
        pattern.replace("*", "x"), name
    )


def group_of_output(name: str, spec: MonitorSpec | None = None) -> str | None:
    """The metric group (of all known) whose outputs include ``name``, if any."""
    probe = spec or MonitorSpec(name="probe", prediction="p", window_ms=_MIN_WINDOW_MS)
    for group, outputs in GROUP_OUTPUTS.items():
        if any(_matches(name, o) for o in outputs(probe)):
            return group
    return None


def closest(name: str, accepted: Iterable[str], n: int = 3) -> list[str]:
    """The accepted names closest to ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, list(accepted), n=n, cutoff=0.6)


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


def _check_alert_metrics(spec: MonitorSpec) -> None:
    """Every alert rule names a metric the spec's groups write (see ``GROUP_OUTPUTS``)."""
    if not spec.alerts:
        return
    from modelyard.analysis import parse_rule

    checked = [g for g in spec.metrics if g in GROUP_OUTPUTS]
    if len(checked) < len(spec.metrics):
        return  # a group that declares no outputs could write anything
    produced = produced_metrics(spec)
    for i, text in enumerate(spec.alerts):
        metric = parse_rule(text).metric
        if any(_matches(metric, p) for p in produced):
            continue
        where = f"monitor spec field 'alerts[{i}]'={text!r}"
        group = group_of_output(metric, spec)
        if group is not None:
            raise InvalidInput(
                f"{where} watches {metric!r}, an output of the metric group {group!r}, which "
                f"this spec does not compute (metrics: {list(spec.metrics)!r}); add {group!r} "
                "to 'metrics' or drop the rule"
            )
        concrete = [p for p in produced if "*" not in p]
        near = closest(metric, concrete)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise InvalidInput(
            f"{where} watches {metric!r}, which no metric group of this spec writes, so it "
            f"could never fire; {hint}the spec's groups {list(spec.metrics)!r} write: "
            f"{', '.join(concrete)}"
        )
