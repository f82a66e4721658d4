"""Domain classifier: finds a change in correlation that every marginal test misses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.analysis import domain_classifier, drift
from modelyard.errors import InvalidInput


def _pair(seed: int, n: int, flip: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(sign: float) -> pd.DataFrame:
        a = rng.normal(size=n)
        return pd.DataFrame(
            {
                "a": a,
                "b": sign * a + 0.3 * rng.normal(size=n),
                "noise": rng.normal(size=n),
                "plan": rng.choice(["basic", "plus", "pro"], n),
            }
        )

    return frame(1.0), frame(-1.0 if flip else 1.0)


def test_correlation_change_is_found_where_marginals_see_nothing() -> None:
    ref, cur = _pair(0, 3000, flip=True)
    assert not drift(ref, cur)["flagged"].any()  # each marginal is unchanged
    result = domain_classifier(ref, cur, max_rows_per_side=1500, seed=1)
    assert result.flagged and result.auc > 0.9
    assert set(result.importances["feature"].iloc[:2]) == {"a", "b"}
    assert result.n_reference_used == result.n_current_used == 1500
    assert result.to_metrics()["domain_top_feature"] in {"a", "b"}


def test_same_distribution_is_not_flagged() -> None:
    ref, cur = _pair(1, 3000, flip=False)
    result = domain_classifier(ref, cur, max_rows_per_side=1500, seed=1)
    assert not result.flagged
    assert abs(result.auc - 0.5) < 0.04
    assert len(result.fold_aucs) == 3


def test_missing_values_and_errors() -> None:
    ref, cur = _pair(2, 300, flip=False)
    ref.loc[:50, "a"] = np.nan
    cur.loc[:50, "plan"] = None
    result = domain_classifier(ref, cur, max_rows_per_side=300)
    assert 0.0 <= result.auc <= 1.0
    with pytest.raises(InvalidInput, match=r"\['zz'\] are not columns of the reference"):
        domain_classifier(ref, cur, features=["zz"])
    with pytest.raises(InvalidInput, match="folds=1"):
        domain_classifier(ref, cur, folds=1)
    with pytest.raises(InvalidInput, match="each needs at least 15"):
        domain_classifier(ref.iloc[:5], cur)
