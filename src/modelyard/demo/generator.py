"""Synthetic telco customers whose churn is drawn from a known model.

Because the true relationship is written down here, the demo can check what the monitor says:
the model trained on this population should reach the ROC AUC the true model allows, a new
population (covariate drift) should move the features' distributions and nothing else, and a
changed relationship (concept drift) should lower the AUC while the inputs look the same.

Features (one customer per row):

| column | kind | population (before drift) | covariate drift (a new population) |
| --- | --- | --- | --- |
| ``tenure`` | months, 0-72 | exponential-ish, mean about 30 | new customers: mean about 7 |
| ``monthly_charges`` | dollars | normal(65, 20) clipped 18-120 | normal(88, 15): fibre bundles |
| ``total_charges`` | dollars | tenure x monthly charges x noise | follows the two above |
| ``contract`` | category | month-to-month 55 %, one-year 25 %, two-year 20 % | 85 / 10 / 5 % |
| ``payment_method`` | category | e-check 35, mailed 20, bank 25, card 20 % | 60 / 10 / 15 / 15 % |
| ``internet_service`` | category | fibre 45 %, DSL 35 %, none 20 % | 80 / 15 / 5 % |
| ``tech_support`` | 0/1 | 35 % | 15 % |
| ``senior_citizen`` | 0/1 | 16 % | 16 % |
| ``support_calls`` | count | Poisson(1.5) | Poisson(1.5) |
| ``region`` | category | north, south, east, west (equal) | same |

The true churn probability is ``sigmoid(logit)`` with the coefficients in ``TRUE_COEFFICIENTS``.
Concept drift replaces them with ``DRIFTED_COEFFICIENTS``: support calls stop mattering, tenure
matters less and the region (a competitor launching in the south) starts to matter, so a model
trained before the change ranks customers worse, with inputs drawn as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORICAL",
    "DRIFTED_COEFFICIENTS",
    "FEATURES",
    "NUMERIC",
    "TRUE_COEFFICIENTS",
    "Population",
    "customers",
    "draw_churn",
    "true_churn_probability",
]

NUMERIC = (
    "tenure",
    "monthly_charges",
    "total_charges",
    "tech_support",
    "senior_citizen",
    "support_calls",
)
CATEGORICAL = ("contract", "payment_method", "internet_service", "region")
FEATURES = NUMERIC + CATEGORICAL

_CONTRACTS = ("month-to-month", "one-year", "two-year")
_PAYMENTS = ("electronic-check", "mailed-check", "bank-transfer", "credit-card")
_INTERNET = ("fibre", "dsl", "none")
_REGIONS = ("north", "south", "east", "west")

# Logit terms of the true model. Numeric terms multiply the (centred) value; categorical terms
# are added for the customer's category (missing categories add 0).
TRUE_COEFFICIENTS: dict[str, float] = {
    "intercept": -1.8,
    "tenure": -0.045,  # per month, centred at 30
    "monthly_charges": 0.02,  # per dollar, centred at 65
    "tech_support": -0.6,
    "senior_citizen": 0.35,
    "support_calls": 0.45,  # per call, centred at 1.5
    "contract=month-to-month": 1.0,
    "contract=two-year": -1.3,
    "payment_method=electronic-check": 0.5,
    "internet_service=fibre": 0.4,
    "internet_service=none": -0.5,
}
DRIFTED_COEFFICIENTS: dict[str, float] = {
    **TRUE_COEFFICIENTS,
    "tenure": -0.01,
    "support_calls": 0.0,
    "contract=month-to-month": 0.2,
    "region=south": 1.8,
    "region=north": -0.8,
}


@dataclass(frozen=True)
class Population:
    """Mixture weights and means of one customer population (see the module table)."""

    tenure_mean: float
    charges_mean: float
    charges_sd: float
    contract: tuple[float, float, float]
    payment: tuple[float, float, float, float]
    internet: tuple[float, float, float]
    tech_support: float

    @classmethod
    def base(cls) -> Population:
        return cls(
            30.0, 65.0, 20.0, (0.55, 0.25, 0.20), (0.35, 0.20, 0.25, 0.20), (0.45, 0.35, 0.20), 0.35
        )

    @classmethod
    def drifted(cls) -> Population:
        return cls(
            7.0, 88.0, 15.0, (0.85, 0.10, 0.05), (0.60, 0.10, 0.15, 0.15), (0.80, 0.15, 0.05), 0.15
        )


def customers(rng: np.random.Generator, n: int, *, covariate_drift: bool = False) -> pd.DataFrame:
    """``n`` customers drawn from the base population, or the new one with ``covariate_drift``."""
    pop = Population.drifted() if covariate_drift else Population.base()
    tenure = np.minimum(rng.exponential(pop.tenure_mean, n), 72).round().astype(int)
    charges = rng.normal(pop.charges_mean, pop.charges_sd, n).clip(18, 120).round(2)
    total = (np.maximum(tenure, 1) * charges * rng.normal(1.0, 0.05, n)).round(2)
    return pd.DataFrame(
        {
            "tenure": tenure,
            "monthly_charges": charges,
            "total_charges": total,
            "tech_support": (rng.random(n) < pop.tech_support).astype(int),
            "senior_citizen": (rng.random(n) < 0.16).astype(int),
            "support_calls": rng.poisson(1.5, n),
            "contract": rng.choice(_CONTRACTS, n, p=pop.contract),
            "payment_method": rng.choice(_PAYMENTS, n, p=pop.payment),
            "internet_service": rng.choice(_INTERNET, n, p=pop.internet),
            "region": rng.choice(_REGIONS, n),
        }
    )


def true_churn_probability(frame: pd.DataFrame, *, concept_drift: bool = False) -> np.ndarray:
    """The known probability that each customer churns (within the observation horizon)."""
    coef = DRIFTED_COEFFICIENTS if concept_drift else TRUE_COEFFICIENTS
    centre = {"tenure": 30.0, "monthly_charges": 65.0, "support_calls": 1.5}
    logit = np.full(len(frame), coef["intercept"])
    for name, weight in coef.items():
        if name == "intercept" or weight == 0.0:
            continue
        column, _, category = name.partition("=")
        values = frame[column].to_numpy()
        if category:
            logit = logit + weight * (values == category)
        else:
            logit = logit + weight * (values.astype(float) - centre.get(column, 0.0))
    return np.asarray(1.0 / (1.0 + np.exp(-logit)))


def draw_churn(
    rng: np.random.Generator, frame: pd.DataFrame, *, concept_drift: bool = False
) -> np.ndarray:
    """Whether each customer churns: a Bernoulli draw from the true probability (0/1 ints)."""
    p = true_churn_probability(frame, concept_drift=concept_drift)
    return (rng.random(len(frame)) < p).astype(int)
