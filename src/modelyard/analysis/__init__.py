"""The statistics of monitoring: pure functions over arrays, frames and sketches, no I/O.

A monitoring job reads metrics (``modelyard.read_metrics``), calls these, and tracks the results
as aggregate metrics. Everything here takes numbers and returns numbers, dicts or DataFrames.
"""

from __future__ import annotations

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
