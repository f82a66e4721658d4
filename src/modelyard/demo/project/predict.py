"""The churn model the demo deploys: ``predict`` scores a customer and tracks what it saw.

``model.json`` next to this file holds the logistic regression trained by the demo (standardised
numeric columns, one-hot categories); scoring is a dot product in plain Python, so a replica
needs neither scikit-learn nor pickle. ``@modelyard.model_metrics`` records each call under a
uuid with the inputs and the churn probability, which the monitor later compares with the
training sample and joins with the ground truth.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import modelyard

__all__ = ["churn_probability", "predict"]


@functools.cache
def _model() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((Path(__file__).parent / "model.json").read_text())
    return loaded


def churn_probability(customer: dict[str, Any], model: dict[str, Any] | None = None) -> float:
    """The model's probability that ``customer`` churns (unknown categories add nothing)."""
    model = model or _model()
    weights = model["weights"]
    logit = float(model["intercept"])
    for name, (mean, scale) in model["numeric"].items():
        logit += weights[name] * (float(customer[name]) - mean) / scale
    for column in model["categories"]:
        logit += weights.get(f"{column}={customer[column]}", 0.0)
    return 1.0 / (1.0 + math.exp(-logit))


@modelyard.model_metrics
def predict(args: dict[str, Any]) -> dict[str, Any]:
    model = _model()
    customer = {name: args[name] for name in (*model["numeric"], *model["categories"])}
    probability = churn_probability(customer, model)
    modelyard.track_metrics({**customer, "churn_probability": probability})
    return {"churn_probability": round(probability, 6), "high_risk": probability >= 0.5}
