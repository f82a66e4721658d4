"""Label coverage: how much of a window's predictions have ground truth, and how late it came.

Ground truth arrives after the prediction (a customer churns next month), so accuracy over a
recent window is computed on the few predictions already labelled, which may not be representative.
Coverage and the delay distribution tell a reader how far to trust that accuracy, and tell an
alert (``label_coverage < 0.5 for 3 windows``) that the label pipeline has stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelyard.analysis._checks import as_float_array, same_length
from modelyard.errors import InvalidInput

__all__ = ["DEFAULT_DELAY_QUANTILES", "label_coverage"]

DEFAULT_DELAY_QUANTILES = (0.5, 0.9, 0.99)


def label_coverage(
    prediction_ms: Any,
    label_ms: Any,
    as_of_ms: int | None = None,
    quantiles: Sequence[float] = DEFAULT_DELAY_QUANTILES,
) -> dict[str, Any]:
    """Share of predictions with a label, and quantiles of the delay from prediction to label.

    ``prediction_ms``: when each prediction was made; ``label_ms``: when its label arrived, NaN or
    None where none has. ``as_of_ms``: count only labels that had arrived by then (to replay what
    a job saw at that time); None counts all. Delays are in milliseconds, as ``delay_p50_ms``
    and so on for each of ``quantiles``, plus ``delay_mean_ms`` and ``delay_max_ms``; NaN when no
    prediction is labelled. A label stamped before its prediction is refused: it means the clocks
    or the join are wrong, and a negative delay would hide that.

    >>> c = label_coverage([0, 1000, 2000, 3000], [500, None, 4000, None])
    >>> c["coverage"], c["delay_p50_ms"]
    (0.5, 1250.0)
    """
    predicted = as_float_array(prediction_ms, "prediction_ms")
    labelled_at = as_float_array(label_ms, "label_ms")
    same_length(predicted, labelled_at, "prediction_ms", "label_ms")
    if np.isnan(predicted).any():
        raise InvalidInput("prediction_ms has missing values; every prediction has a time")
    for q in quantiles:
        if not 0.0 <= q <= 1.0:
            raise InvalidInput(f"quantile {q!r} must be in [0, 1], e.g. 0.5 or 0.99")
    has_label = ~np.isnan(labelled_at)
    if as_of_ms is not None:
        has_label &= labelled_at <= as_of_ms
    delays = labelled_at[has_label] - predicted[has_label]
    if delays.size and delays.min() < 0:
        worst = int(np.argmin(delays))
        raise InvalidInput(
            f"a label arrived {-delays[worst]:.0f} ms before its prediction "
            f"(prediction at {predicted[has_label][worst]:.0f}); label times must be at or after "
            "prediction times"
        )
    n = predicted.shape[0]
    out: dict[str, Any] = {
        "n": n,
        "labelled": int(delays.size),
        "coverage": float(delays.size / n) if n else math.nan,
    }
    values = np.quantile(delays, list(quantiles)) if delays.size else [math.nan] * len(quantiles)
    for q, v in zip(quantiles, values, strict=True):
        out[f"delay_p{_label(q)}_ms"] = float(v)
    out["delay_mean_ms"] = float(delays.mean()) if delays.size else math.nan
    out["delay_max_ms"] = float(delays.max()) if delays.size else math.nan
    return out


def _label(q: float) -> str:
    """0.5 -> '50', 0.99 -> '99', 0.999 -> '99.9'."""
    text = f"{q * 100:.4f}".rstrip("0").rstrip(".")
    return text
