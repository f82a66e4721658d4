"""Train the demo's churn model with scikit-learn and export it as plain JSON.

The deployed project scores with the exported numbers in pure Python (``project/predict.py``):
no pickle crosses into the replicas (the security model never unpickles), the replicas do not
import scikit-learn (they start faster), and a test checks that both give the same probability.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelyard.demo.generator import CATEGORICAL, NUMERIC

__all__ = ["train"]


def train(frame: pd.DataFrame, churned: np.ndarray) -> dict[str, Any]:
    """Fit standardise + one-hot + logistic regression; return the JSON-ready parameters.

    ``{"numeric": {name: [mean, scale]}, "categories": {name: [...]}, "weights": {term: w},
    "intercept": b, "train_auc": ...}``; a term is a numeric column or ``column=category``.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), list(NUMERIC)),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
        ]
    )
    pipeline = Pipeline([("prep", prep), ("fit", LogisticRegression(max_iter=1000))])
    pipeline.fit(frame, churned)
    scaler: Any = pipeline.named_steps["prep"].named_transformers_["num"]
    encoder: Any = pipeline.named_steps["prep"].named_transformers_["cat"]
    fit: Any = pipeline.named_steps["fit"]
    terms = list(NUMERIC) + [
        f"{column}={category}"
        for column, cats in zip(CATEGORICAL, encoder.categories_, strict=True)
        for category in cats
    ]
    weights = fit.coef_[0]
    score = pipeline.predict_proba(frame)[:, 1]
    return {
        "numeric": {
            name: [float(m), float(s)]
            for name, m, s in zip(NUMERIC, scaler.mean_, scaler.scale_, strict=True)
        },
        "categories": {
            column: [str(c) for c in cats]
            for column, cats in zip(CATEGORICAL, encoder.categories_, strict=True)
        },
        "weights": {term: float(w) for term, w in zip(terms, weights, strict=True)},
        "intercept": float(fit.intercept_[0]),
        "train_auc": float(roc_auc_score(churned, score)),
        "train_rows": len(frame),
    }
