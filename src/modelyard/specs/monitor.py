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
    min_labels: 30                               # fewer labelled predictions: no label metrics
    min_predictions: 30                          # fewer predictions: no drift, no estimates
    labels: {connection: crm, table: outcomes, uuid_column: prediction_uuid}  # ground truth

``labels`` reads the ground truth from a connection at the start of each run, and a reference
may come from one too (``reference: {connection: crm, table: training}``): see
``modelyard.specs.labels``.

``MonitorSpec`` is a pydantic model: each field's check is a validator of that field, the checks
between fields run once all fields passed, and the first problem comes back as ``InvalidInput``
naming the field (``modelyard.specs._base``). What a spec needs from the store (the deployment,
its recorded keys) is checked by the run (``modelyard.monitors.run.check_spec``).

>>> spec = MonitorSpec.from_dict(
...     {"name": "churn", "model": "churn", "prediction": "p", "label": "y", "window": "1h"}
... )
>>> spec.window_ms, spec.metrics
(3600000, ('classification', 'label_coverage', 'estimated_performance'))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from modelyard.analysis.alerts import parse_rule
from modelyard.errors import InvalidInput
from modelyard.settings import parse_duration_ms
from modelyard.specs._base import Spec
from modelyard.specs._monitor_fields import (
    DEFAULT_METRICS,
    DEFAULT_MINIMUM,
    METRICS,
    TASKS,
    ReferenceWindow,
    _alerts,
    _check_groups,
    _default_metrics,
    _did_you_mean,
    _minimum,
    _names,
    _notify,
    _reference,
    _text,
    _thresholds,
)
from modelyard.specs.labels import LabelsSource, ReferenceSource
from modelyard.specs.monitor_outputs import (
    GROUP_OUTPUTS,
    closest,
    group_of_output,
    matches,
    produced_metrics,
)
from modelyard.timeparse import parse_time_ms

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "TASKS",
    "LabelsSource",
    "MonitorSpec",
    "ReferenceSource",
    "ReferenceWindow",
    "connection_names",
]

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
    "min_labels",
    "min_predictions",
    "labels",
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_MIN_WINDOW_MS = 1000
_DRIFT_GROUPS = ("drift", "prediction_drift", "multivariate_drift")


def _required(value: Any, name: str) -> str:
    text = _text({name: value}, name, required=True)
    assert text is not None
    return text


class MonitorSpec(Spec):
    """A checked monitor spec, built from its YAML form (``from_dict``, ``from_yaml``). Exactly
    one of ``deployment`` and ``model`` is set; exactly one of ``reference_stored`` (a sample
    name) and ``reference_window`` when a reference is needed."""

    # False when ``metrics`` are the defaults: a default group the data cannot feed (a reference
    # without the prediction column) is then a warning, not an error about what nobody wrote.
    # Set from the document (first, so the checks of later fields read it).
    metrics_given: bool = Field(default=True, repr=False, exclude=True)
    # Fields are checked in this order, each seeing those above it; the first problem is told.
    name: str = Field(default=None, validate_default=True)  # checked: required
    deployment: str | None = None
    model: str | None = Field(
        default=None, validate_default=True
    )  # checked: one of it and deployment
    prediction: str = Field(default=None, validate_default=True)  # as name
    window_ms: int = Field(default=None, validation_alias="window", validate_default=True)
    features: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    task: str = "classification"
    metrics: tuple[str, ...] = DEFAULT_METRICS["classification"]
    label: str | None = Field(default=None, validate_default=True)  # checked: needed by some groups
    segments: tuple[str, ...] = ()  # columns of the ``segments`` group (monitors.segment_group)
    positive_label: Any = 1
    # a stored sample's name, a window, or a table / file of a connection
    reference: str | ReferenceWindow | ReferenceSource | None = None
    labels: LabelsSource | None = None  # ground truth read from a connection by each run
    start_ms: int | None = Field(default=None, validation_alias="start")
    thresholds: dict[str, float] = Field(default_factory=dict)
    alerts: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    # Below these a window's label metrics (``min_labels``: labelled predictions) or its drift
    # and estimates (``min_predictions``) are not written, so alerts neither fire nor resolve.
    min_labels: int = DEFAULT_MINIMUM
    min_predictions: int = DEFAULT_MINIMUM

    def __eq__(self, other: object) -> bool:
        """Equal specs watch the same thing the same way (``metrics_given`` aside)."""
        if not isinstance(other, MonitorSpec):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # thresholds is a dict: not hashable

    @property
    def source(self) -> str:
        """The ``source`` of this monitor's aggregate records (see ``replace_aggregate``)."""
        return f"monitor:{self.name}"

    @property
    def reference_stored(self) -> str | None:
        """The stored reference sample's name, if the reference is one."""
        return self.reference if isinstance(self.reference, str) else None

    @property
    def reference_window(self) -> ReferenceWindow | None:
        """The earlier window used as the reference, if it is one."""
        return self.reference if isinstance(self.reference, ReferenceWindow) else None

    @property
    def reference_source(self) -> ReferenceSource | None:
        """The table or file of a connection the reference is read from, if it is one."""
        return self.reference if isinstance(self.reference, ReferenceSource) else None

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
        """Check ``data`` (the YAML form) field by field; InvalidInput names the field and what
        is accepted."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a monitor spec must be a mapping, got {type(data).__name__}")
        return cls.parse(data, "a monitor spec")

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
        elif self.reference_source is not None:
            out["reference"] = self.reference_source.to_dict()
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
        for key in ("min_labels", "min_predictions"):
            if getattr(self, key) != DEFAULT_MINIMUM:
                out[key] = getattr(self, key)
        if self.labels is not None:
            out["labels"] = self.labels.to_dict()
        return out

    # -- the document as a whole, before the fields ---------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _document(cls, data: Any) -> Any:
        """Unknown fields are refused (with the closest known one); ``metrics`` not given are
        the task's defaults the spec can feed, and a ``segments`` field asks for its group."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a monitor spec must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS), key=str)
        if unknown:
            raise InvalidInput(
                f"monitor spec field(s) {unknown!r} are not known"
                f"{_did_you_mean([str(u) for u in unknown], _FIELDS)}; accepted: "
                f"{', '.join(_FIELDS)}"
            )
        out = dict(data)
        out["metrics_given"] = "metrics" in data
        if "metrics" not in data:
            task = data.get("task") or "classification"
            task = task.strip() if isinstance(task, str) else task
            if task in TASKS:
                out["metrics"] = _default_metrics(task, data.get("features"), data.get("reference"))
        segments, metrics = data.get("segments"), out.get("metrics")
        if segments and isinstance(metrics, list | tuple) and "segments" not in metrics:
            out["metrics"] = (*metrics, "segments")  # the field is what asks for the group
        return out

    # -- each field -----------------------------------------------------------------------------
    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        name = _required(value, "name")
        if not _NAME.match(name):
            raise InvalidInput(
                f"monitor spec field 'name'={name!r} is not accepted; use lower-case letters, "
                "digits, '.', '_' or '-' (at most 63, starting with a letter or digit)"
            )
        return name

    @field_validator("deployment", mode="before")
    @classmethod
    def _deployment(cls, value: Any) -> str | None:
        deployment = _text({"deployment": value}, "deployment")
        if deployment is not None and not deployment.startswith("crn:"):
            raise InvalidInput(
                f"monitor spec field 'deployment'={deployment!r} is not a CRN; expected "
                "'crn:modelyard:deployment/<uuid>'"
            )
        return deployment

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any, info: ValidationInfo) -> str | None:
        model = _text({"model": value}, "model")
        if "deployment" in info.data and (info.data["deployment"] is None) == (model is None):
            raise InvalidInput(
                "monitor spec needs exactly one of the fields 'deployment' (a CRN) and 'model' "
                f"(a model name, monitored through its active deployment); got deployment="
                f"{info.data['deployment']!r}, model={model!r}"
            )
        return model

    @field_validator("prediction", mode="before")
    @classmethod
    def _prediction(cls, value: Any) -> str:
        return _required(value, "prediction")

    @field_validator("window_ms", mode="before")
    @classmethod
    def _window(cls, value: Any) -> int:
        if value is None:
            raise InvalidInput(
                "monitor spec field 'window' is missing; give the window length, e.g. 1h or 1d"
            )
        try:
            window_ms = parse_duration_ms(str(value), "monitor spec field 'window'")
        except InvalidInput as exc:
            raise InvalidInput(exc.message) from None
        if window_ms < _MIN_WINDOW_MS:
            raise InvalidInput(
                f"monitor spec field 'window'={value!r} is shorter than 1s; use e.g. 1h"
            )
        return window_ms

    @field_validator("features", "segments", mode="before")
    @classmethod
    def _name_list(cls, value: Any, info: ValidationInfo) -> tuple[str, ...]:
        return _names({str(info.field_name): value}, str(info.field_name))

    @field_validator("categorical", mode="before")
    @classmethod
    def _categorical(cls, value: Any, info: ValidationInfo) -> tuple[str, ...]:
        categorical = _names({"categorical": value}, "categorical")
        features = info.data.get("features", ())
        stray = [c for c in categorical if c not in features]
        if stray and "features" in info.data:
            raise InvalidInput(
                f"monitor spec field 'categorical' names {stray!r}, which are not in 'features' "
                f"{list(features)!r}; list each categorical feature in 'features' too"
            )
        return categorical

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, value: Any) -> str:
        task = _text({"task": value}, "task") or "classification"
        if task not in TASKS:
            raise InvalidInput(
                f"monitor spec field 'task'={task!r} is not accepted"
                f"{_did_you_mean([task], TASKS)}; choose from {', '.join(TASKS)}"
            )
        return task

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, value: Any, info: ValidationInfo) -> tuple[str, ...]:
        metrics = _names({"metrics": value}, "metrics")
        _check_groups(metrics)
        task = info.data.get("task")
        wrong = [m for m in metrics if m in _TASK_REFUSES.get(task or "", ())]
        if wrong:
            raise InvalidInput(
                f"monitor spec field 'metrics' asks for {wrong!r}, which a {task} monitor does "
                f"not compute; for task {task!r} choose from "
                f"{', '.join(m for m in METRICS if m not in _TASK_REFUSES[str(task)])}"
            )
        return metrics

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: Any, info: ValidationInfo) -> str | None:
        label = _text({"label": value}, "label")
        metrics = info.data.get("metrics", ())
        needs_label = [
            m for m in metrics if m in ("classification", "regression", "label_coverage")
        ]
        if needs_label and label is None:
            raise InvalidInput(
                f"monitor spec asks for {needs_label!r}{_chosen(info.data)} but has no field "
                "'label'; name the delayed metric holding the ground truth, or list only metric "
                "groups that need no label in 'metrics' (e.g. [estimated_performance])"
            )
        return label

    @field_validator("positive_label", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if not isinstance(value, str | int | float | bool):
            raise InvalidInput(
                f"monitor spec field 'positive_label'={value!r} is not accepted; give the "
                "label value that means the positive class, e.g. 1, true or 'churned'"
            )
        return value

    @field_validator("reference", mode="before")
    @classmethod
    def _reference(cls, value: Any) -> str | ReferenceWindow | ReferenceSource | None:
        if isinstance(value, Mapping) and "connection" in value:
            return ReferenceSource.from_value(value)
        stored, window = _reference(value)
        return stored if stored is not None else window

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any, info: ValidationInfo) -> LabelsSource | None:
        if value is None or isinstance(value, LabelsSource):
            return value
        return LabelsSource.from_value(value, info.data.get("label"))

    @field_validator("start_ms", mode="before")
    @classmethod
    def _start(cls, value: Any) -> int | None:
        return None if value is None else parse_time_ms(str(value), "monitor spec field 'start'")

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds(cls, value: Any) -> dict[str, float]:
        return _thresholds(value)

    @field_validator("alerts", mode="before")
    @classmethod
    def _alerts(cls, value: Any) -> tuple[str, ...]:
        return _alerts(value)

    @field_validator("notify", mode="before")
    @classmethod
    def _notify(cls, value: Any) -> tuple[str, ...]:
        return _notify(value)

    @field_validator("min_labels", "min_predictions", mode="before")
    @classmethod
    def _minimum(cls, value: Any, info: ValidationInfo) -> int:
        return _minimum(value, str(info.field_name))

    # -- the fields together --------------------------------------------------------------------
    @model_validator(mode="after")
    def _together(self) -> Self:
        """What the fields say together, once each passed: the metric groups the segments, the
        features and the reference allow, and alert rules on metrics the groups write."""
        _check_metrics(self)
        _check_alert_metrics(self)
        return self


def _chosen(fields: Mapping[str, Any]) -> str:
    """What a message says of metrics the user did not write."""
    given = fields.get("metrics_given", True)
    return "" if given else " (the default metrics: 'metrics' is not given)"


def _check_metrics(spec: MonitorSpec) -> None:
    """The metric groups against the task, the label, the segments, features and reference."""
    metrics = spec.metrics
    if "segments" in metrics and not spec.segments:
        raise InvalidInput(
            "monitor spec field 'metrics' asks for 'segments' but field 'segments' is empty; "
            "list the columns to split each window by, e.g. segments: [region, contract]"
        )
    if "multivariate_drift" in metrics and len(spec.features) < 2:
        raise InvalidInput(
            f"monitor spec asks for 'multivariate_drift' but field 'features' lists "
            f"{list(spec.features)!r}; it needs at least 2 features (how they move together), "
            "or drop 'multivariate_drift' from 'metrics'"
        )
    if "drift" in metrics and not spec.features:
        raise InvalidInput(
            "monitor spec asks for 'drift' but field 'features' is empty; list the input "
            "keys to compare with the reference, or drop 'drift' from 'metrics'"
        )
    if spec.reference is None and any(m in metrics for m in _DRIFT_GROUPS):
        raise InvalidInput(
            f"monitor spec asks for drift{_chosen(spec.__dict__)} but has no field "
            "'reference'; give {stored: <sample name>} or {window: {start: ..., end: ...}}"
        )


def _check_alert_metrics(spec: MonitorSpec) -> None:
    """Every alert rule names a metric the spec's groups write (see ``GROUP_OUTPUTS``)."""
    if not spec.alerts:
        return
    checked = [g for g in spec.metrics if g in GROUP_OUTPUTS]
    if len(checked) < len(spec.metrics):
        return  # a group that declares no outputs could write anything
    produced = produced_metrics(spec)
    for i, text in enumerate(spec.alerts):
        metric = parse_rule(text).metric
        if any(matches(metric, p) for p in produced):
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


def connection_names(spec: MonitorSpec) -> tuple[str, ...]:
    """The connections a monitor's run reads (``labels.connection``, ``reference.connection``):
    the job runner gives the run those connections' secrets."""
    names = []
    if spec.labels is not None:
        names.append(spec.labels.connection)
    if spec.reference_source is not None:
        names.append(spec.reference_source.connection)
    return tuple(dict.fromkeys(names))
