"""The statistics of monitoring: pure functions over arrays, frames and sketches, no I/O.

A monitoring job reads metrics (``modelyard.read_metrics``), calls these, and tracks the results
as aggregate metrics. Everything here takes numbers and returns numbers, dicts or DataFrames.

The names below load on first use: importing one light submodule (``specs`` takes the alert rule
parser from ``analysis.alerts`` and the thresholds from ``analysis._report``) must not pull in
scikit-learn and SciPy's statistics, which cost about a second; every ``modelyard`` command
imports the specs.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from modelyard.analysis.alerts import AlertEvaluator, AlertEvent, Rule, evaluate, parse_rule
    from modelyard.analysis.classification import (
        classification_metrics,
        delong_roc_auc,
        expected_calibration_error,
    )
    from modelyard.analysis.concept import ADWIN, PageHinkley, detect
    from modelyard.analysis.coverage import label_coverage
    from modelyard.analysis.estimation import estimate_performance, expected_roc_auc
    from modelyard.analysis.multivariate import DomainClassifierResult, domain_classifier
    from modelyard.analysis.regression import regression_metrics
    from modelyard.analysis.segments import by_segment, fairness_gaps
    from modelyard.analysis.sketches import (
        QuantileSummary,
        sketch_drift,
        sketch_ks,
        sketch_quantiles,
    )
    from modelyard.analysis.univariate import (
        DEFAULT_ALPHA,
        DEFAULT_THRESHOLDS,
        MAJOR_THRESHOLDS,
        REPORT_COLUMNS,
        DriftReference,
        drift,
        drift_summary,
        prediction_drift,
    )

__all__ = [
    "ADWIN",
    "DEFAULT_ALPHA",
    "DEFAULT_THRESHOLDS",
    "MAJOR_THRESHOLDS",
    "REPORT_COLUMNS",
    "AlertEvaluator",
    "AlertEvent",
    "DomainClassifierResult",
    "DriftReference",
    "PageHinkley",
    "QuantileSummary",
    "Rule",
    "by_segment",
    "classification_metrics",
    "delong_roc_auc",
    "detect",
    "domain_classifier",
    "drift",
    "drift_summary",
    "estimate_performance",
    "evaluate",
    "expected_calibration_error",
    "expected_roc_auc",
    "fairness_gaps",
    "label_coverage",
    "parse_rule",
    "prediction_drift",
    "regression_metrics",
    "sketch_drift",
    "sketch_ks",
    "sketch_quantiles",
]

_LAZY = {
    "ADWIN": "concept",
    "AlertEvaluator": "alerts",
    "AlertEvent": "alerts",
    "DEFAULT_ALPHA": "univariate",
    "DEFAULT_THRESHOLDS": "univariate",
    "DomainClassifierResult": "multivariate",
    "DriftReference": "univariate",
    "MAJOR_THRESHOLDS": "univariate",
    "PageHinkley": "concept",
    "QuantileSummary": "sketches",
    "REPORT_COLUMNS": "univariate",
    "Rule": "alerts",
    "by_segment": "segments",
    "classification_metrics": "classification",
    "delong_roc_auc": "classification",
    "detect": "concept",
    "domain_classifier": "multivariate",
    "drift": "univariate",
    "drift_summary": "univariate",
    "estimate_performance": "estimation",
    "evaluate": "alerts",
    "expected_calibration_error": "classification",
    "expected_roc_auc": "estimation",
    "fairness_gaps": "segments",
    "label_coverage": "coverage",
    "parse_rule": "alerts",
    "prediction_drift": "univariate",
    "regression_metrics": "regression",
    "sketch_drift": "sketches",
    "sketch_ks": "sketches",
    "sketch_quantiles": "sketches",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelyard.analysis' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"modelyard.analysis.{module}"), name)
    globals()[name] = value
    return value
