"""MonitorSpec: YAML and dict forms agree, and every error names the field at fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.specs import MonitorSpec, ReferenceWindow
from modelyard.specs.monitor import DEFAULT_METRICS

DEP = "crn:modelyard:deployment/1b4e28ba-2fa1-11d2-883f-0016d3cca427"
YAML = f"""
name: churn
deployment: {DEP}
reference: {{stored: training}}
features: [tenure, plan]
categorical: [plan]
prediction: probability
label: churned
positive_label: 1
window: 1h
thresholds: {{psi: 0.2}}
alerts: ["roc_auc < 0.7", "label_coverage < 0.5 for 3 windows"]
notify: ["http://127.0.0.1:9/hook", "ops@example.com"]
"""


def base(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "churn",
        "deployment": DEP,
        "reference": {"stored": "training"},
        "features": ["tenure", "plan"],
        "categorical": ["plan"],
        "prediction": "probability",
        "label": "churned",
        "window": "1h",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_yaml_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "churn.yaml"
    path.write_text(YAML)
    spec = MonitorSpec.from_yaml(path)
    assert spec.window_ms == 3_600_000
    assert spec.deployment == DEP and spec.reference_stored == "training"
    assert spec.categorical == ("plan",) and spec.metrics == DEFAULT_METRICS["classification"]
    assert spec.thresholds == {"psi": 0.2}
    assert spec.alerts == ("roc_auc < 0.7", "label_coverage < 0.5 for 3 windows")
    assert spec.source == "monitor:churn"
    assert MonitorSpec.from_dict(spec.to_dict()) == spec


def test_reference_window_and_name_from_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "Fraud.yml"
    text = YAML.replace("name: churn\n", "").replace(
        "reference: {stored: training}",
        "reference: {window: {start: '2026-01-01', end: '2026-01-08T00:00:00Z'}}",
    )
    path.write_text(text)
    spec = MonitorSpec.from_yaml(path)
    assert spec.name == "fraud"
    assert spec.reference_window == ReferenceWindow(1_767_225_600_000, 1_767_830_400_000)
    assert MonitorSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"window": "soon"}, ["window", "soon"]),
        ({"window": None}, ["window", "1h"]),
        ({"window": "10ms"}, ["window", "1s"]),
        ({"name": "Churn Model"}, ["name", "Churn Model"]),
        ({"deployment": None}, ["deployment", "model"]),
        ({"model": "churn"}, ["deployment", "model"]),
        ({"deployment": "churn"}, ["deployment", "CRN"]),
        ({"prediction": None}, ["prediction", "required"]),
        ({"features": "tenure", "categorical": ["plan"]}, ["categorical", "plan", "features"]),
        ({"features": [1, 2]}, ["features", "list"]),
        ({"metrics": ["accuracy"]}, ["metrics", "classification"]),
        ({"label": None}, ["label", "classification"]),
        ({"reference": {"stored": ""}}, ["reference.stored"]),
        ({"reference": {"window": {"start": 1}}}, ["reference.window", "end"]),
        ({"reference": {"window": {"start": 5, "end": 1}}}, ["reference.window", "start"]),
        ({"reference": "training"}, ["reference", "stored", "window"]),
        ({"reference": None}, ["reference", "drift"]),
        ({"thresholds": {"psy": 0.1}}, ["thresholds.psy", "psi"]),
        ({"thresholds": {"psi": -1}}, ["thresholds.psi", "positive"]),
        ({"alerts": ["auc is low"]}, ["alerts[0]", "auc is low", "roc_auc < 0.7"]),
        ({"notify": ["ftp://x/y"]}, ["notify[0]", "ftp", "http"]),
        ({"positive_label": [1]}, ["positive_label"]),
        ({"windw": "1h"}, ["windw", "window"]),
        ({"min_labels": 0}, ["min_labels", "0", "at least 1"]),
        ({"min_labels": "30"}, ["min_labels", "'30'", "whole number"]),
        ({"min_labels": 2.5}, ["min_labels", "2.5"]),
        ({"min_predictions": True}, ["min_predictions", "True", "whole number"]),
        ({"min_predictions": -5}, ["min_predictions", "-5"]),
        ({"min_label": 10}, ["min_label", "min_labels"]),
    ],
)
def test_errors_name_the_field(changes: dict[str, Any], names: list[str]) -> None:
    data = base()
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    with pytest.raises(InvalidInput) as info:
        MonitorSpec.from_dict(data)
    for name in names:
        assert name in info.value.message, (name, info.value.message)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"missing\.yaml"):
        MonitorSpec.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(InvalidInput, match=r"bad\.yaml.*not valid YAML"):
        MonitorSpec.from_yaml(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(InvalidInput, match=r"list\.yaml.*not a mapping"):
        MonitorSpec.from_yaml(listed)


MINIMAL = {"name": "c", "model": "churn", "prediction": "p", "label": "churned", "window": "1m"}


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        # the bad value and the nearest accepted one
        ({"metrics": ["classification", "label_covrage"]}, ["'label_covrage'", "'label_coverage'"]),
        ({"metrics": ["accuracy"]}, ["'accuracy'", "outputs of 'classification'"]),
        ({"metrics": ["roc_auc"]}, ["'roc_auc'", "outputs of 'classification'"]),
        ({"lable": "churned"}, ["'lable'", "'label'"]),
        ({"task": "clasification"}, ["'clasification'", "'classification'"]),
        ({"thresholds": {"pssi": 0.2}}, ["'thresholds.pssi'", "'psi'"]),
        # alert rules that could never fire
        ({"alerts": ["rocauc < 0.7"]}, ["alerts[0]", "'rocauc'", "did you mean 'roc_auc'"]),
        (
            {"alerts": ["roc_auc < 0.7", "psi.tenure > 0.2"]},
            ["alerts[1]", "'psi.tenure'", "'drift'", "does not compute"],
        ),
        ({"alerts": ["label_coverage < 0.5"], "metrics": ["classification"]}, ["label_coverage"]),
    ],
)
def test_errors_name_the_bad_value_and_the_nearest_accepted(
    changes: dict[str, Any], says: list[str]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        MonitorSpec.from_dict({**MINIMAL, **changes})
    for text in says:
        assert text in caught.value.message, caught.value.message


def test_rules_on_produced_metrics_and_patterns_are_accepted() -> None:
    spec = MonitorSpec.from_dict(
        {
            **MINIMAL,
            "reference": {"stored": "training"},
            "features": ["tenure"],
            "alerts": ["roc_auc < 0.7", "psi.* > 0.2", "drift.flagged > 0", "n < 10"],
        }
    )
    assert "drift" in spec.metrics


def test_defaults_ask_only_for_what_the_spec_can_feed() -> None:
    """No `metrics:` and no `features`: no complaint about a 'drift' nobody wrote."""
    spec = MonitorSpec.from_dict(MINIMAL)
    assert spec.metrics == ("classification", "label_coverage", "estimated_performance")
    with pytest.raises(InvalidInput) as caught:
        MonitorSpec.from_dict({**MINIMAL, "features": ["tenure"]})
    assert "default metrics" in caught.value.message and "'reference'" in caught.value.message


def test_minimum_sample_sizes_default_to_30_and_round_trip() -> None:
    spec = MonitorSpec.from_dict(base())
    assert (spec.min_labels, spec.min_predictions) == (30, 30)
    assert "min_labels" not in spec.to_dict()  # a default is not written out
    small = MonitorSpec.from_dict(base(min_labels=1, min_predictions=200))
    assert (small.min_labels, small.min_predictions) == (1, 200)
    assert small.to_dict()["min_labels"] == 1 and small.to_dict()["min_predictions"] == 200
    assert MonitorSpec.from_dict(small.to_dict()) == small
    assert small != spec
