"""A monitor spec: what to watch (a deployment), against what (a reference), how often (windows).

Written as a small YAML file or built in Python; both go through ``MonitorSpec.from_dict``, which
checks every field and names it in its error, so a typo in a spec fails when it is loaded, not
an hour later inside a job::

    name: churn
    deployment: crn:modelyard:deployment/...     # or  model: churn  (its active deployment)
    reference: {stored: training}                # or  {window: {start: ..., end: ...}}
    features: [tenure, monthly_charges, plan]
    categorical: [plan]
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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.analysis import DEFAULT_THRESHOLDS, parse_rule
from modelyard.errors import InvalidInput
from modelyard.settings import parse_duration_ms
from modelyard.timeparse import parse_time_ms

__all__ = ["DEFAULT_METRICS", "METRICS", "TASKS", "MonitorSpec", "ReferenceWindow"]

METRICS = (
    "classification",
    "regression",
    "drift",
    "label_coverage",
    "prediction_drift",
    "estimated_performance",
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
    label: str | None = None
    task: str = "classification"
    positive_label: Any = 1
    start_ms: int | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS["classification"]
    thresholds: Mapping[str, float] = field(default_factory=dict)
    alerts: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()

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
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise InvalidInput(
                f"monitor spec field(s) {unknown!r} are not known; accepted: {', '.join(_FIELDS)}"
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
                f"monitor spec field 'task'={task!r} is not accepted; choose from "
                f"{', '.join(TASKS)}"
            )
        metrics = _names(data, "metrics") if "metrics" in data else DEFAULT_METRICS[task]
        bad = [m for m in metrics if m not in METRICS]
        if bad or not metrics:
            raise InvalidInput(
                f"monitor spec field 'metrics'={list(metrics)!r} is not accepted; choose from "
                f"{', '.join(METRICS)}"
            )
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
                f"monitor spec asks for {needs_label!r} but has no field 'label'; name the "
                "delayed metric holding the ground truth, or drop those metrics"
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
            "drift" in metrics or "prediction_drift" in metrics
        ):
            raise InvalidInput(
                "monitor spec asks for drift but has no field 'reference'; give "
                "{stored: <sample name>} or {window: {start: ..., end: ...}}"
            )
        start_ms = None
        if data.get("start") is not None:
            start_ms = parse_time_ms(str(data["start"]), "monitor spec field 'start'")
        return cls(
            name=name,
            prediction=prediction,
            window_ms=window_ms,
            deployment=deployment,
            model=model,
            reference_stored=stored,
            reference_window=window,
            features=features,
            categorical=categorical,
            label=label,
            task=task,
            positive_label=positive,
            start_ms=start_ms,
            metrics=metrics,
            thresholds=_thresholds(data.get("thresholds")),
            alerts=_alerts(data.get("alerts")),
            notify=_notify(data.get("notify")),
        )

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
    raise InvalidInput(f"monitor spec field 'reference'={value!r} is not accepted; {accepted}")


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
                f"monitor spec field 'thresholds.{key}' is not a drift method; accepted: "
                f"{', '.join(methods)}"
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
