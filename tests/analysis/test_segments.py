"""by_segment and fairness_gaps against direct pandas/numpy computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.analysis import by_segment, classification_metrics, fairness_gaps
from modelyard.errors import InvalidInput


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 3000
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    y = (rng.random(n) < 0.4).astype(float)
    score = np.clip(0.3 * y + rng.random(n) * 0.7 + (group == "b") * 0.1, 0, 1)
    return pd.DataFrame(
        {"group": group, "y": y, "score": score, "t": np.sort(rng.integers(0, 3 * 3_600_000, n))}
    )


def test_by_segment_runs_the_metric_per_value(frame: pd.DataFrame) -> None:
    out = by_segment(frame, "group", lambda g: classification_metrics(g["y"], g["score"]))
    assert list(out["group"]) == ["a", "b", "c"]
    for _, row in out.iterrows():
        part = frame[frame["group"] == row["group"]]
        assert row["rows"] == len(part) == row["n"]
        assert row["roc_auc"] == classification_metrics(part["y"], part["score"])["roc_auc"]


def test_small_segments_are_kept_without_metrics() -> None:
    f = pd.DataFrame({"s": ["x", "x", "y", None], "v": [1.0, 2.0, 3.0, 4.0]})
    out = by_segment(f, "s", lambda g: {"mean": g["v"].mean()}, min_rows=2)
    assert out["rows"].tolist() == [2, 1, 1]
    assert out["mean"].iloc[0] == 1.5 and out["mean"].iloc[1:].isna().all()
    with pytest.raises(InvalidInput, match="collide"):
        by_segment(f, "s", lambda g: {"rows": 1})
    with pytest.raises(InvalidInput, match=r"\['nope'\] are not in the frame"):
        by_segment(f, "nope", lambda g: {})


def _gap(rates: pd.Series) -> float:
    return float(rates.max() - rates.min())


def test_fairness_gaps_per_window(frame: pd.DataFrame) -> None:
    out = fairness_gaps(frame, "group", "score", "y", time="t", window_ms=3_600_000)
    assert out["window_start_ms"].tolist() == [0, 3_600_000, 7_200_000]
    for _, row in out.iterrows():
        w = frame[(frame["t"] // 3_600_000) * 3_600_000 == row["window_start_ms"]]
        selected = w["score"] >= 0.5
        dp = _gap(selected.groupby(w["group"]).mean())
        tpr = _gap(selected[w["y"] == 1].groupby(w["group"][w["y"] == 1]).mean())
        assert row["n"] == len(w)
        assert row["demographic_parity_difference"] == pytest.approx(dp)
        assert row["equal_opportunity_difference"] == pytest.approx(tpr)
        assert row["selection_rate_b"] == pytest.approx(selected[w["group"] == "b"].mean())
    whole = fairness_gaps(frame, "group", "score")
    assert "window_start_ms" not in whole and whole["equal_opportunity_difference"].isna().all()
    assert whole["demographic_parity_difference"].iloc[0] > 0.05  # group b is scored higher


def test_fairness_errors(frame: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match="both time= and window_ms="):
        fairness_gaps(frame, "group", "score", time="t")
    with pytest.raises(InvalidInput, match="labels 0/1"):
        fairness_gaps(frame.assign(y=2.0), "group", "score", "y")
