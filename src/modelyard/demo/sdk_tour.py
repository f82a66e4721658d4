"""The interim main job: a short, real run of the SDK on the embedded store.

It serves a churn model as a decorated ``predict`` function in this process (the server and
replicas come with a later issue), records every prediction, joins ground truth that "arrives
later" by uuid, computes ROC AUC for the window, writes it back as an aggregate metric and reads
everything back as a DataFrame. Every step goes through the public SDK and the real SQLite store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.ids import new_crn
from modelyard.timeparse import now_ms

__all__ = ["TourResult", "run_sdk_tour"]

_CONTRACTS = ("month-to-month", "one-year", "two-year")


@dataclass
class TourResult:
    home: Path
    deployment_crn: str
    predictions: int
    labelled: int
    roc_auc: float
    roc_auc_ci: tuple[float, float]
    records_read: int
    seconds: float


def _customers(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    tenure = rng.integers(0, 72, n)
    charges = rng.normal(70, 25, n).clip(18, 120).round(2)
    contract = rng.choice(_CONTRACTS, n, p=[0.55, 0.25, 0.2])
    calls = rng.poisson(1.5, n)
    return [
        {
            "tenure": int(t),
            "monthly_charges": float(c),
            "contract": str(k),
            "support_calls": int(s),
        }
        for t, c, k, s in zip(tenure, charges, contract, calls, strict=True)
    ]


def _true_churn_probability(customer: dict[str, Any]) -> float:
    """The known relationship the synthetic churn is drawn from."""
    logit = (
        -1.0
        - 0.04 * customer["tenure"]
        + 0.02 * (customer["monthly_charges"] - 70)
        + 0.45 * customer["support_calls"]
        + {"month-to-month": 0.9, "one-year": -0.3, "two-year": -1.2}[customer["contract"]]
    )
    return float(1 / (1 + np.exp(-logit)))


def _train(rng: np.random.Generator) -> Callable[[dict[str, Any]], float]:
    from sklearn.linear_model import LogisticRegression

    train = _customers(rng, 3000)
    features = np.array([_encode(c) for c in train])
    labels = np.array([rng.random() < _true_churn_probability(c) for c in train])
    model = LogisticRegression(max_iter=1000).fit(features, labels)

    def churn_probability(customer: dict[str, Any]) -> float:
        return float(model.predict_proba(np.array([_encode(customer)]))[0, 1])

    return churn_probability


def _encode(c: dict[str, Any]) -> list[float]:
    return [
        c["tenure"],
        c["monthly_charges"],
        c["support_calls"],
        *(float(c["contract"] == k) for k in _CONTRACTS),
    ]


def run_sdk_tour(
    home: Path, predictions: int = 2000, seed: int = 7, say: Callable[[str], None] = print
) -> TourResult:
    """Run the tour against the embedded store in ``home`` and report what happened."""
    started = time.perf_counter()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["MODELYARD_HOME"] = str(home)
    os.environ.pop("MODELYARD_DATABASE_URL", None)
    os.environ.pop("MODELYARD_URL", None)
    identity = {kind: new_crn(kind) for kind in ("model", "build", "deployment")}
    os.environ["MODELYARD_MODEL_CRN"] = identity["model"]
    os.environ["MODELYARD_BUILD_CRN"] = identity["build"]
    os.environ["MODELYARD_DEPLOYMENT_CRN"] = identity["deployment"]

    import modelyard
    from modelyard.analysis import classification_metrics

    rng = np.random.default_rng(seed)
    churn_probability = _train(rng)
    say(f"trained a churn model; deployment {identity['deployment']}")

    @modelyard.model_metrics
    def predict(args: dict[str, Any]) -> dict[str, float]:
        probability = churn_probability(args)
        modelyard.track_metrics({"input": args, "churn_probability": probability})
        return {"churn_probability": probability}

    window_start = now_ms()
    customers = _customers(rng, predictions)
    replies = [predict(c) for c in customers]
    modelyard.flush()
    window_end = now_ms()
    say(f"made {len(replies)} predictions, each recorded under its uuid")

    # Weeks later: some customers churned, some stayed, some have no outcome yet.
    labelled = 0
    for customer, reply in zip(customers, replies, strict=True):
        if rng.random() < 0.7:
            churned = int(rng.random() < _true_churn_probability(customer))
            modelyard.track_delayed_metrics({"churned": churned}, reply["uuid"])
            labelled += 1
    say(f"joined ground truth for {labelled} of them by uuid (delayed metrics)")

    frame = modelyard.read_metrics_frame(
        model_deployment_crn=identity["deployment"],
        start_timestamp_ms=window_start,
        end_timestamp_ms=window_end,
    )
    rows = frame[(frame["kind"] == "prediction") & frame["churned"].notna()]
    scores = rows["churn_probability"].to_numpy(dtype=float)
    result = classification_metrics(rows["churned"].to_numpy(dtype=int), scores)
    modelyard.track_aggregate_metrics(
        {
            "roc_auc": result["roc_auc"],
            "roc_auc_ci_low": result["roc_auc_ci_low"],
            "roc_auc_ci_high": result["roc_auc_ci_high"],
            "label_coverage": labelled / len(replies),
        },
        window_start,
        window_end,
        model_deployment_crn=identity["deployment"],
    )
    everything = modelyard.read_metrics_frame(model_deployment_crn=identity["deployment"])
    say(
        f"ROC AUC {result['roc_auc']:.3f} "
        f"(95% CI {result['roc_auc_ci_low']:.3f}-{result['roc_auc_ci_high']:.3f}), "
        "tracked as an aggregate metric for the window"
    )
    say(f"read back {len(everything)} records as a DataFrame; store at {home}")
    return TourResult(
        home=home,
        deployment_crn=identity["deployment"],
        predictions=len(replies),
        labelled=labelled,
        roc_auc=float(result["roc_auc"]),
        roc_auc_ci=(float(result["roc_auc_ci_low"]), float(result["roc_auc_ci_high"])),
        records_read=len(everything),
        seconds=time.perf_counter() - started,
    )
