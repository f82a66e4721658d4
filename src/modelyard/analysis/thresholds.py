"""The drift methods and their flag thresholds: plain constants, so the specs (and every
``modelyard`` command, which imports them) can check a monitor's thresholds without loading
SciPy."""

from __future__ import annotations

__all__ = [
    "CATEGORICAL_METHODS",
    "DEFAULT_ALPHA",
    "DEFAULT_THRESHOLDS",
    "MAJOR_THRESHOLDS",
    "NUMERIC_METHODS",
]

NUMERIC_METHODS = ("psi", "ks", "wasserstein", "jensen_shannon")
CATEGORICAL_METHODS = ("psi", "chi2", "jensen_shannon", "unseen_share")

# Flag thresholds on each method's effect. PSI 0.1 is the usual "moderate shift" line and 0.25
# the "major" one; the others are set to flag shifts of about the same size (a mean shift of
# about 0.25 standard deviations of a normal feature crosses all four numeric thresholds).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.1,
    "ks": 0.1,  # D: the largest gap between the two CDFs
    "wasserstein": 0.1,  # in reference standard deviations
    "jensen_shannon": 0.1,  # distance, base 2, in [0, 1]
    "chi2": 0.1,  # Cramér's V, Cohen's "small" effect
    "unseen_share": 0.05,  # 5 % of current rows in categories the reference never had
}
MAJOR_THRESHOLDS: dict[str, float] = {
    "psi": 0.25,
    "ks": 0.2,
    "wasserstein": 0.25,
    "jensen_shannon": 0.2,
    "chi2": 0.3,
    "unseen_share": 0.2,
}
# 1 %, not 5 %: a monitor tests every window, and at 5 % a stable feature set raises a false
# alarm in about one window of twenty (measured: 5.1 % vs 0.8 % for two stable features).
DEFAULT_ALPHA = 0.01
