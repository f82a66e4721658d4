"""Summaries of one metric key's values in a rollup bucket: numbers and categories.

Sketch choice: Apache DataSketches ``kll_doubles_sketch`` with ``k = 200`` (the library's
default). ``kll_doubles_sketch.get_normalized_rank_error(200, False)`` is 0.0133 (single-sided, for
quantile and rank queries) and 0.0165 for PMF/histogram queries; the library derives these
constants from the 99th percentile of the maximum error measured over thousands of trials, so they
hold with about 99% confidence. A k=200 sketch keeps at most about 600 values (about 5 KB
serialised) however many it has seen, so a bucket stays small; k=100 would halve that but double
the error to 2.6%, and k=400 buys 0.68% for twice the bytes. Until a sketch has seen more than
k values it keeps them all (not "estimation mode"): quantiles and histograms are then exact and
``rank_error`` is 0.0.

A categorical summary keeps at most ``MAX_CATEGORIES`` (1,000) distinct categories; further ones
are counted under ``"__other__"`` so a bucket stays bounded whatever strings users send. Totals
stay exact; per-category counts are exact while a key has at most 1,000 distinct values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, Final, SupportsFloat

import numpy as np
import numpy.typing as npt
from datasketches import kll_doubles_sketch

from modelyard.errors import InvalidInput

__all__ = ["KLL_K", "MAX_CATEGORIES", "OTHER", "QUANTILES", "CategoricalSummary", "NumericSummary"]

KLL_K: Final = 200
MAX_CATEGORIES: Final = 1000
OTHER: Final = "__other__"
# The quantiles every numeric summary reports in ``to_dict``, with their names.
QUANTILES: Final[tuple[tuple[str, float], ...]] = (
    ("p01", 0.01),
    ("p05", 0.05),
    ("p25", 0.25),
    ("p50", 0.5),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99", 0.99),
)

# Single values are buffered and folded into the sketch and moments in one vectorised step:
# a Python list append is several times cheaper than a sketch update call per value.
_FLUSH_AT: Final = 4096
_NUMPY_FROM: Final = 32  # buffered batches at least this long are folded in with numpy
_Floats = npt.NDArray[np.float64]


def _new_sketch() -> kll_doubles_sketch:
    return kll_doubles_sketch(KLL_K)


class NumericSummary:
    """Count, sum, sum of squares, min, max, mean/std and a KLL sketch of numeric values.

    >>> s = NumericSummary()
    >>> s.update_many(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> s.count, s.total, s.min, s.max, s.quantiles([0.5]), s.rank_error
    (4, 10.0, 1.0, 4.0, [2.0], 0.0)
    """

    __slots__ = (
        "_count",
        "_m2",
        "_max",
        "_mean",
        "_min",
        "_pending",
        "_sketch",
        "_total",
        "_total_sq",
    )

    def __init__(self) -> None:
        self._init(_new_sketch())

    def _init(self, sketch: kll_doubles_sketch) -> None:
        self._count = 0
        self._total = 0.0
        self._total_sq = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the mean (Welford/Chan)
        self._sketch = sketch
        self._pending: list[float] = []

    @classmethod
    def _with_sketch(cls, sketch: kll_doubles_sketch) -> NumericSummary:
        """An empty summary around an existing sketch (skips building a throwaway one)."""
        summary = cls.__new__(cls)
        summary._init(sketch)
        return summary

    # -- updates --------------------------------------------------------------------------------
    def update(self, value: SupportsFloat) -> None:
        """Add one finite number; InvalidInput for NaN, infinities and non-numbers."""
        if isinstance(value, str | bytes) or value is None:
            raise InvalidInput(f"numeric summary value {value!r} is not a number; pass a float")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInput(
                f"numeric summary value {value!r} is not finite; pass a finite float"
            )
        self.add_finite(number)

    def add_finite(self, number: float) -> None:
        """Add a number already known to be a finite float (``BucketSummary``'s fast path)."""
        pending = self._pending
        pending.append(number)
        if len(pending) >= _FLUSH_AT:
            self._flush()

    def update_many(self, values: npt.ArrayLike) -> None:
        """Add an array of finite numbers in one vectorised step (sketch included)."""
        array = np.ascontiguousarray(values, dtype=np.float64).ravel()
        if array.size == 0:
            return
        if not array.flags.writeable:
            # DataSketches' array binding refuses read-only arrays (a TypeError), and read-only
            # is what pandas 3 hands out from ``Series.to_numpy()``; copy only then.
            array = array.copy()
        finite = np.isfinite(array)
        if not finite.all():
            bad = array[~finite][0]
            raise InvalidInput(
                f"numeric summary values contain {bad!r}; pass finite floats only "
                "(drop NaN and infinities first)"
            )
        self._flush()
        self._absorb(array)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if len(pending) >= _NUMPY_FROM:
            self._absorb(np.array(pending, dtype=np.float64))
            return
        # A handful of values (typical of minute buckets): plain Python beats numpy's per-call
        # overhead several times over.
        n = len(pending)
        total = math.fsum(pending)
        mean = total / n
        self._combine(
            n,
            total,
            math.fsum(v * v for v in pending),
            min(pending),
            max(pending),
            mean,
            math.fsum((v - mean) * (v - mean) for v in pending),
        )
        update = self._sketch.update
        for value in pending:
            update(value)

    def _absorb(self, array: _Floats) -> None:
        n = int(array.size)
        total = float(array.sum())
        mean = total / n
        deviations = array - mean
        self._combine(
            n,
            total,
            float(np.dot(array, array)),
            float(array.min()),
            float(array.max()),
            mean,
            float(np.dot(deviations, deviations)),
        )
        self._sketch.update(array)

    def _combine(
        self, n: int, total: float, total_sq: float, lo: float, hi: float, mean: float, m2: float
    ) -> None:
        """Fold in the moments of another group (Chan, Golub and LeVeque's pairwise update)."""
        if n == 0:
            return
        if self._count == 0:
            self._count, self._total, self._total_sq = n, total, total_sq
            self._min, self._max, self._mean, self._m2 = lo, hi, mean, m2
            return
        count = self._count + n
        delta = mean - self._mean
        self._m2 += m2 + delta * delta * self._count * n / count
        self._mean += delta * n / count
        self._count = count
        self._total += total
        self._total_sq += total_sq
        self._min = min(self._min, lo)
        self._max = max(self._max, hi)

    def merge(self, other: NumericSummary) -> None:
        """Add everything ``other`` has seen; ``other`` is left unchanged."""
        if not isinstance(other, NumericSummary):
            raise InvalidInput(
                f"cannot merge {type(other).__name__} into a NumericSummary; "
                "pass another NumericSummary"
            )
        if other is self:
            other = self.copy()
        self._flush()
        other._flush()
        self._combine(
            other._count,
            other._total,
            other._total_sq,
            other._min,
            other._max,
            other._mean,
            other._m2,
        )
        self._sketch.merge(other._sketch)

    def __iadd__(self, other: NumericSummary) -> NumericSummary:
        self.merge(other)
        return self

    def copy(self) -> NumericSummary:
        self._flush()
        clone = NumericSummary._with_sketch(
            kll_doubles_sketch.deserialize(self._sketch.serialize())
        )
        clone._combine(
            self._count, self._total, self._total_sq, self._min, self._max, self._mean, self._m2
        )
        return clone

    # -- reads ----------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self._count + len(self._pending)

    @property
    def total(self) -> float:
        self._flush()
        return self._total

    @property
    def total_sq(self) -> float:
        self._flush()
        return self._total_sq

    @property
    def min(self) -> float:
        """Smallest value seen (``inf`` while empty)."""
        self._flush()
        return self._min

    @property
    def max(self) -> float:
        """Largest value seen (``-inf`` while empty)."""
        self._flush()
        return self._max

    @property
    def mean(self) -> float:
        """Arithmetic mean (NaN while empty)."""
        self._flush()
        return self._mean if self._count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation, ddof=0 (NaN while empty)."""
        self._flush()
        if not self._count:
            return math.nan
        return math.sqrt(max(self._m2, 0.0) / self._count)

    @property
    def is_exact(self) -> bool:
        """True while the sketch still holds every value (quantiles and histograms are exact)."""
        self._flush()
        return not self._sketch.is_estimation_mode()

    @property
    def rank_error(self) -> float:
        """Normalised rank error of quantiles (0.0 while exact; 0.0133 for k=200 otherwise)."""
        return 0.0 if self.is_exact else float(self._sketch.normalized_rank_error(False))

    @property
    def histogram_rank_error(self) -> float:
        """Normalised error of each histogram bin's share (0.0 while exact; 0.0165 for k=200)."""
        return 0.0 if self.is_exact else float(self._sketch.normalized_rank_error(True))

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """Values at normalised ranks ``qs`` (each in [0, 1]); NaN for each while empty.

        The definition is the inverse CDF (numpy's ``inverted_cdf``): the smallest value whose
        share of values at or below it reaches q. Exact while ``is_exact``.
        """
        ranks = [float(q) for q in qs]
        for q in ranks:
            if not 0.0 <= q <= 1.0:
                raise InvalidInput(f"quantile {q!r} is outside [0, 1]; pass ranks such as 0.5")
        self._flush()
        if not self._count:
            return [math.nan] * len(ranks)
        return [float(v) for v in self._sketch.get_quantiles(ranks, True)]

    def histogram(self, edges: Sequence[float]) -> list[int]:
        """Counts in the bins ``[e0, e1), [e1, e2), ..., [e_{m-1}, e_m]`` (numpy's convention).

        Values outside ``[e0, e_m]`` are not counted. Exact while ``is_exact``; otherwise each
        bin's share is within ``histogram_rank_error`` of the truth (about 99% confidence).
        """
        points = [float(e) for e in edges]
        if len(points) < 2:
            raise InvalidInput(f"histogram edges {points!r} need at least two values")
        if not all(math.isfinite(e) for e in points) or any(
            b <= a for a, b in itertools.pairwise(points)
        ):
            raise InvalidInput(f"histogram edges {points!r} must be finite and strictly increasing")
        self._flush()
        if not self._count:
            return [0] * (len(points) - 1)
        below = self._sketch.get_cdf(points, False)[: len(points)]  # share < each edge
        below[-1] = self._sketch.get_rank(points[-1], True)  # last bin is closed on the right
        # Round the cumulative counts, then difference: bins stay non-negative and sum correctly.
        cumulative = [round(share * self._count) for share in below]
        return [max(b - a, 0) for a, b in itertools.pairwise(cumulative)]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready shape reads return for a numeric key (None for undefined values)."""
        self._flush()
        empty = self._count == 0
        out: dict[str, Any] = {
            "count": self._count,
            "sum": self._total,
            "min": None if empty else self._min,
            "max": None if empty else self._max,
            "mean": None if empty else self.mean,
            "std": None if empty else self.std,
        }
        values = self.quantiles(q for _, q in QUANTILES)
        for (name, _), value in zip(QUANTILES, values, strict=True):
            out[name] = None if empty else value
        out["rank_error"] = self.rank_error
        return out

    # -- serialisation (``BucketSummary.to_bytes`` / ``from_bytes``) -----------------------------
    def to_state(self) -> tuple[list[Any], bytes]:
        """(count, sum, sum of squares, min, max, mean, M2) and the sketch's own bytes."""
        self._flush()  # buffered values must reach the sketch first
        empty = self._count == 0
        moments = [
            self._count,
            self._total,
            self._total_sq,
            None if empty else self._min,
            None if empty else self._max,
            self._mean,
            self._m2,
        ]
        return moments, self._sketch.serialize()

    @classmethod
    def from_state(cls, state: Sequence[Any], sketch: bytes) -> NumericSummary:
        """The summary ``to_state`` described; InvalidInput if the two disagree."""
        count, total, total_sq, lo, hi, mean, m2 = state
        summary = cls._with_sketch(kll_doubles_sketch.deserialize(sketch))
        summary._combine(
            int(count),
            float(total),
            float(total_sq),
            math.inf if lo is None else float(lo),
            -math.inf if hi is None else float(hi),
            float(mean),
            float(m2),
        )
        if summary._sketch.n != summary._count:
            raise InvalidInput(
                f"bucket summary is inconsistent: count {count} but the sketch holds "
                f"{summary._sketch.n} values; the stored bytes are damaged"
            )
        return summary

    def __repr__(self) -> str:
        return f"NumericSummary(count={self.count}, min={self.min}, max={self.max})"


class CategoricalSummary:
    """Counts per category, at most ``max_categories`` distinct ones plus ``"__other__"``.

    >>> c = CategoricalSummary()
    >>> c.update("yes"); c.update("no"); c.update("yes")
    >>> c.to_dict()
    {'count': 3, 'categories': {'yes': 2, 'no': 1}}
    """

    __slots__ = ("_counts", "_max_categories")

    def __init__(self, max_categories: int = MAX_CATEGORIES) -> None:
        if isinstance(max_categories, bool) or not isinstance(max_categories, int):
            raise InvalidInput(f"max_categories={max_categories!r} must be a positive integer")
        if max_categories < 1:
            raise InvalidInput(f"max_categories={max_categories!r} must be a positive integer")
        self._max_categories = max_categories
        self._counts: dict[str, int] = {}

    @property
    def max_categories(self) -> int:
        return self._max_categories

    def _named(self) -> int:
        return len(self._counts) - (OTHER in self._counts)

    def update(self, category: str, n: int = 1) -> None:
        """Count ``category`` ``n`` times (a new one beyond the cap counts under ``__other__``)."""
        if not isinstance(category, str):
            raise InvalidInput(
                f"category {category!r} is not a string; convert it first (bools: 'true'/'false')"
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInput(f"category count n={n!r} must be a positive integer")
        counts = self._counts
        if category in counts:
            counts[category] += n
        elif self._named() < self._max_categories:
            counts[category] = n
        else:
            counts[OTHER] = counts.get(OTHER, 0) + n

    def merge(self, other: CategoricalSummary) -> None:
        """Add ``other``'s counts; over the cap, the most frequent categories are kept."""
        if not isinstance(other, CategoricalSummary):
            raise InvalidInput(
                f"cannot merge {type(other).__name__} into a CategoricalSummary; "
                "pass another CategoricalSummary"
            )
        counts = self._counts
        for category, n in list(other._counts.items()):
            counts[category] = counts.get(category, 0) + n
        if self._named() > self._max_categories:
            # Keep the most frequent (ties by name, so the outcome does not depend on order).
            named = sorted(
                ((c, n) for c, n in counts.items() if c != OTHER), key=lambda cn: (-cn[1], cn[0])
            )
            kept = dict(named[: self._max_categories])
            rest = sum(n for _, n in named[self._max_categories :]) + counts.get(OTHER, 0)
            kept[OTHER] = rest
            self._counts = kept

    def __iadd__(self, other: CategoricalSummary) -> CategoricalSummary:
        self.merge(other)
        return self

    def to_state(self) -> list[Any]:
        """[cap, {category: count}] as ``BucketSummary.to_bytes`` keeps it."""
        return [self._max_categories, self._counts]

    @classmethod
    def from_state(cls, cap: int, counts: dict[Any, Any]) -> CategoricalSummary:
        """The summary ``to_state`` described."""
        summary = cls(cap)
        summary._counts = {str(c): int(n) for c, n in counts.items()}
        return summary

    def copy(self) -> CategoricalSummary:
        clone = CategoricalSummary(self._max_categories)
        clone._counts = dict(self._counts)
        return clone

    @property
    def count(self) -> int:
        return sum(self._counts.values())

    @property
    def categories(self) -> dict[str, int]:
        """Category -> count, most frequent first (a copy)."""
        return dict(sorted(self._counts.items(), key=lambda cn: (-cn[1], cn[0])))

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "categories": self.categories}

    def __repr__(self) -> str:
        return f"CategoricalSummary(count={self.count}, distinct={len(self._counts)})"
