"""Seeded streams with drift injected at a known window: detection delay and false-alarm rate.

200 seeds x 20 windows of 500 rows against a 2,000-row reference, two features (one numeric,
one categorical). Windows 0-14 are stable; from window 15 the numeric feature's mean moves by
0.5 standard deviations. The figures asserted here are the ones quoted in docs/analysis.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.analysis import DriftReference

SEEDS = 200
WINDOWS = 20
DRIFT_AT = 15
WINDOW_ROWS = 500
REFERENCE_ROWS = 2000
LEVELS = np.array(list("abcdef"))
WEIGHTS = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])


def _frame(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    return pd.DataFrame({"x": rng.normal(shift, 1.0, n), "c": rng.choice(LEVELS, n, p=WEIGHTS)})


def run_streams() -> tuple[np.ndarray, np.ndarray]:
    """flags[seed, window, feature]: any method flagged that feature in that window."""
    flags = np.zeros((SEEDS, WINDOWS, 2), dtype=bool)
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        reference = DriftReference(_frame(rng, REFERENCE_ROWS, 0.0))
        for window in range(WINDOWS):
            shift = 0.5 if window >= DRIFT_AT else 0.0
            report = reference.compare(_frame(rng, WINDOW_ROWS, shift))
            flagged = report["flagged"].to_numpy()
            features = report["feature"].to_numpy()
            flags[seed, window] = [flagged[features == "x"].any(), flagged[features == "c"].any()]
    stable = flags[:, :DRIFT_AT, :]
    return stable, flags[:, DRIFT_AT:, 0]


@pytest.fixture(scope="module")
def streams() -> tuple[np.ndarray, np.ndarray]:
    return run_streams()


def test_false_alarm_rate_on_stable_windows(streams) -> None:
    stable, _ = streams
    per_feature_window = stable.mean()  # 200 seeds x 15 windows x 2 features
    any_feature = stable.any(axis=2).mean()
    seeds_with_any = stable.any(axis=(1, 2)).mean()
    print(
        f"false alarms: {per_feature_window:.4f} per feature-window, {any_feature:.4f} per window,"
        f" {seeds_with_any:.3f} of seeds had one in {DRIFT_AT} stable windows"
    )
    assert per_feature_window <= 0.01
    assert any_feature <= 0.02


def test_drift_is_detected_in_the_first_drifted_window(streams) -> None:
    _, drifted = streams
    first = drifted[:, 0].mean()
    every = drifted.all(axis=1).mean()
    print(f"detection: {first:.3f} at the first drifted window, {every:.3f} in all five")
    assert first >= 0.99
    assert every >= 0.98


if __name__ == "__main__":  # the figures for docs/analysis.md
    s, d = run_streams()
    print(
        s.mean(), s.any(axis=2).mean(), s.any(axis=(1, 2)).mean(), d[:, 0].mean(), d.all(1).mean()
    )
