"""Concept drift on a stream of errors: Page-Hinkley and ADWIN.

Feed each prediction's error (0/1 for a classifier, absolute error for a regressor) in time order
as its label arrives; a detector says when the error rate has changed. Streaming API in River's
style: ``update(x)`` then read ``drift_detected``; ``detect(stream)`` returns every index where
a drift was detected.

Why written here rather than taken from ``river``: the two detectors are about 150 lines together,
river is a large compiled dependency (it pins its own numpy/pandas ranges) for two classes, and
owning them lets the state be a few floats that a monitoring job can reason about. They follow the
published algorithms and River's parameter names and defaults (Page 1954 / Mouss et al. 2004 for
Page-Hinkley; Bifet & Gavaldà 2007, ADWIN2 with an exponential histogram, for ADWIN), and the
tests pin their behaviour on seeded streams (detection delay, false alarms on stable streams).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from modelyard.errors import InvalidInput

__all__ = ["ADWIN", "PageHinkley", "detect"]


class PageHinkley:
    """Page-Hinkley test for a change in the mean of a stream.

    Accumulates the deviations of each value from the running mean minus a tolerance ``delta``
    (faded by ``alpha``); a drift is detected when the accumulated sum rises more than
    ``threshold`` above its minimum (``mode="up"``: the mean increased, e.g. more errors),
    falls below its maximum (``"down"``), or either (``"both"``). After a detection the
    statistics restart.

    >>> ph = PageHinkley(threshold=5.0)
    >>> hits = detect(ph, [0.0] * 100 + [1.0] * 100)
    >>> hits[0] > 100
    True
    """

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
    ) -> None:
        if mode not in ("up", "down", "both"):
            raise InvalidInput(f"mode={mode!r} must be 'up', 'down' or 'both'")
        if threshold <= 0 or min_instances < 1 or not 0 < alpha <= 1:
            raise InvalidInput(
                f"PageHinkley needs threshold > 0, min_instances >= 1 and 0 < alpha <= 1; got "
                f"threshold={threshold!r}, min_instances={min_instances!r}, alpha={alpha!r}"
            )
        self.min_instances, self.delta, self.threshold = min_instances, delta, threshold
        self.alpha, self.mode = alpha, mode
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self._mean = 0.0
        self._sum_up = 0.0
        self._min_up = math.inf
        self._sum_down = 0.0
        self._max_down = -math.inf

    def update(self, x: float) -> PageHinkley:
        if self.drift_detected:
            self._reset()
        self.n += 1
        self._mean += (x - self._mean) / self.n
        dev = x - self._mean
        self._sum_up = self.alpha * self._sum_up + dev - self.delta
        self._sum_down = self.alpha * self._sum_down + dev + self.delta
        self._min_up = min(self._min_up, self._sum_up)
        self._max_down = max(self._max_down, self._sum_down)
        up = self._sum_up - self._min_up > self.threshold
        down = self._max_down - self._sum_down > self.threshold
        fired = up if self.mode == "up" else down if self.mode == "down" else up or down
        self.drift_detected = self.n >= self.min_instances and fired
        return self


class ADWIN:
    """ADaptive WINdowing: keeps the longest recent window whose mean has not changed.

    The window is stored as an exponential histogram (at most ``max_buckets`` buckets of each
    size 2^i, so memory is O(log n)). Every ``clock`` updates it checks every split of the window
    into an older and a newer part; when their means differ by more than the Hoeffding-style bound
    for confidence ``delta``, the oldest bucket is dropped and a drift is detected. ``estimation``
    is the mean of the current window; ``width`` its length.

    >>> import random
    >>> rng = random.Random(1)
    >>> adwin = ADWIN()
    >>> hits = detect(adwin, [rng.random() < 0.1 for _ in range(1000)]
    ...                      + [rng.random() < 0.5 for _ in range(1000)])
    >>> 1000 < hits[0] < 1200
    True
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if not 0 < delta < 1 or clock < 1 or max_buckets < 2 or min_window_length < 1:
            raise InvalidInput(
                f"ADWIN needs 0 < delta < 1, clock >= 1, max_buckets >= 2, min_window_length >= 1;"
                f" got delta={delta!r}, clock={clock!r}, max_buckets={max_buckets!r}, "
                f"min_window_length={min_window_length!r}"
            )
        self.delta, self.clock, self.max_buckets = delta, clock, max_buckets
        self.min_window_length, self.grace_period = min_window_length, grace_period
        self.drift_detected = False
        self.width = 0
        self.total = 0.0
        self.variance = 0.0  # sum of squared deviations from the window's mean
        self._tick = 0
        # _rows[i]: buckets of size 2**i, oldest first, each [total, sum of squared deviations].
        self._rows: list[list[list[float]]] = [[]]

    @property
    def estimation(self) -> float:
        return self.total / self.width if self.width else 0.0

    def update(self, x: float) -> ADWIN:
        self.drift_detected = False
        x = float(x)
        if self.width:
            mean = self.total / self.width
            self.variance += self.width * (x - mean) ** 2 / (self.width + 1)
        self.width += 1
        self.total += x
        self._rows[0].append([x, 0.0])
        self._compress()
        self._tick += 1
        if self._tick % self.clock == 0 and self.width > self.grace_period:
            self.drift_detected = self._shrink()
        return self

    def _compress(self) -> None:
        level = 0
        while level < len(self._rows) and len(self._rows[level]) > self.max_buckets:
            row = self._rows[level]
            (t1, v1), (t2, v2) = row.pop(0), row.pop(0)
            size = float(2**level)
            merged = [t1 + t2, v1 + v2 + size * size * (t1 / size - t2 / size) ** 2 / (2 * size)]
            if level + 1 == len(self._rows):
                self._rows.append([])
            self._rows[level + 1].append(merged)
            level += 1

    def _drop_oldest(self) -> None:
        level = len(self._rows) - 1
        while not self._rows[level]:
            level -= 1
        total, var = self._rows[level].pop(0)
        size = 2**level
        self.width -= size
        self.total -= total
        if self.width:
            new_mean = self.total / self.width
            self.variance -= (
                var + size * self.width / (size + self.width) * (total / size - new_mean) ** 2
            )
            self.variance = max(self.variance, 0.0)
        else:
            self.variance = 0.0
        while len(self._rows) > 1 and not self._rows[-1]:
            self._rows.pop()

    def _shrink(self) -> bool:
        detected = False
        changed = True
        while changed and self.width > 2 * self.min_window_length:
            changed = False
            n0, t0 = 0, 0.0
            # Oldest buckets first: they sit at the highest levels.
            for level in range(len(self._rows) - 1, -1, -1):
                size = 2**level
                for total, _ in self._rows[level]:
                    n0 += size
                    t0 += total
                    n1 = self.width - n0
                    if n1 < self.min_window_length:
                        break
                    if n0 >= self.min_window_length and self._cut(
                        n0, n1, t0 / n0 - (self.total - t0) / n1
                    ):
                        self._drop_oldest()
                        detected = changed = True
                        break
                if changed or self.width - n0 < self.min_window_length:
                    break
        return detected

    def _cut(self, n0: int, n1: int, gap: float) -> bool:
        delta_prime = math.log(2.0 * math.log(self.width) / self.delta)
        m = 1.0 / (n0 - self.min_window_length + 1) + 1.0 / (n1 - self.min_window_length + 1)
        var = self.variance / self.width
        eps = math.sqrt(2.0 * m * var * delta_prime) + 2.0 / 3.0 * delta_prime * m
        return abs(gap) > eps


def detect(detector: PageHinkley | ADWIN, stream: Iterable[float]) -> list[int]:
    """Feed ``stream`` to ``detector``; return the indices at which it detected a drift."""
    hits = []
    for i, x in enumerate(stream):
        if detector.update(float(x)).drift_detected:
            hits.append(i)
    return hits
