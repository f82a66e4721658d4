"""Input checks shared by the analysis functions.

Every check raises ``InvalidInput`` whose message names the bad value and what would be accepted,
so a monitoring job that feeds bad data fails with a message a user can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.errors import InvalidInput

__all__ = ["as_float_array", "binary_labels", "drop_nan_pairs", "same_length"]

FloatArray = npt.NDArray[np.float64]


def as_float_array(values: Any, name: str) -> FloatArray:
    """A 1-d float64 array of ``values``; None becomes NaN. Refuses text and nested input."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        sample = list(values[:3]) if isinstance(values, Sequence) else type(values).__name__
        raise InvalidInput(
            f"{name} must be numbers (a 1-d array, list or Series of floats), got {sample!r}"
        ) from exc
    if array.ndim != 1:
        raise InvalidInput(f"{name} must be one-dimensional, got an array of shape {array.shape}")
    return array


def same_length(a: FloatArray, b: FloatArray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise InvalidInput(
            f"{name_a} has {a.shape[0]} values but {name_b} has {b.shape[0]}; "
            "they must be the same length (one pair per prediction)"
        )


def drop_nan_pairs(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray, int]:
    """Drop pairs where either side is NaN (a prediction without its label); return the count."""
    keep = ~(np.isnan(a) | np.isnan(b))
    dropped = int(a.shape[0] - np.count_nonzero(keep))
    if dropped:
        return a[keep], b[keep], dropped
    return a, b, 0


def binary_labels(y_true: FloatArray, name: str = "y_true") -> FloatArray:
    """``y_true`` if every value is 0 or 1 (True/False count); else InvalidInput naming them."""
    bad = (y_true != 0.0) & (y_true != 1.0)
    if np.any(bad):
        seen = np.unique(y_true[bad])
        shown = ", ".join(repr(float(v)) for v in seen[:10])
        more = f" and {seen.size - 10} more" if seen.size > 10 else ""
        raise InvalidInput(
            f"{name} must be binary labels 0/1 (or False/True); saw the values {shown}{more}"
        )
    return y_true
