"""Technical aggregates (the gateway's ``tech.*`` records): their sketches and how they merge.

The gateway writes one aggregate per deployment per interval with ``source = "tech"``; rollup
merges old ones into hourly, then daily records. Merging must give the same figures as if the
coarser interval had been measured directly, so every key says how it combines:

- counts are summed: ``tech.requests``, ``tech.failures``, ``tech.status_<code>``,
  ``tech.replica.<id>.requests|failures|restarts``;
- ``tech.rps`` is recomputed as requests over the merged window's length;
- ``tech.in_flight_max`` and every ``..._max`` keep the maximum;
- ``tech.replica.<id>.cpu_percent|rss_bytes`` are averaged over the intervals that sampled them
  (weighted by ``tech.replica.<id>.samples``, 1 when absent), their maximum kept as ``..._max``;
- latency percentiles (``tech.latency[_queue|_function]_p50|p95|p99_ms``) are never averaged:
  they are read again from the merged KLL sketches (``tech.latency[_queue|_function]_sketch``),
  which are kept so the next, coarser merge can do the same.

A key none of these rules names is dropped by a merge (it could not be combined correctly).

Sketches are Apache DataSketches ``kll_floats_sketch`` with ``k = 100``: a few KB serialised at
any traffic, normalised rank error about 0.026 (single-sided) at any count; stored as base64 of
the library's compact serialisation, so a record stays plain JSON.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from datasketches import kll_floats_sketch

from modelyard.errors import InvalidInput
from modelyard.store.base import DAY_MS, HOUR_MS

__all__ = [
    "LATENCY_PREFIXES",
    "PERCENTILES",
    "SKETCH_K",
    "SOURCE",
    "TECH_TIERS",
    "decode_sketch",
    "encode_sketch",
    "merge",
    "new_sketch",
    "percentile_key",
    "percentiles_of",
    "rank_error",
    "sketch_key",
    "sketch_of",
]

SOURCE = "tech"
SKETCH_K = 100
PERCENTILES = (50, 95, 99)
# The three latency series: total (as the gateway sees it), queue and user function.
LATENCY_PREFIXES = ("tech.latency", "tech.latency_queue", "tech.latency_function")
# (width, age): technical aggregates older than ``age`` are merged into records ``width`` wide.
TECH_TIERS: tuple[tuple[int, int], ...] = ((HOUR_MS, DAY_MS), (DAY_MS, 30 * DAY_MS))

_REPLICA = "tech.replica."
_SUMMED_REPLICA = ("requests", "failures", "restarts")
_AVERAGED_REPLICA = ("cpu_percent", "rss_bytes")


def percentile_key(prefix: str, q: int) -> str:
    return f"{prefix}_p{q}_ms"


def sketch_key(prefix: str) -> str:
    return f"{prefix}_sketch"


_PERCENTILE_KEYS = frozenset(percentile_key(p, q) for p in LATENCY_PREFIXES for q in PERCENTILES)
_SKETCH_KEYS = {sketch_key(p): p for p in LATENCY_PREFIXES}


def new_sketch() -> kll_floats_sketch:
    return kll_floats_sketch(SKETCH_K)


def rank_error() -> float:
    """The single-quantile normalised rank error of the sketches (about 0.026 for k = 100)."""
    return float(kll_floats_sketch.get_normalized_rank_error(SKETCH_K, False))


def encode_sketch(sketch: kll_floats_sketch) -> str:
    return base64.b64encode(sketch.serialize()).decode("ascii")


def decode_sketch(text: object, key: str = "sketch") -> kll_floats_sketch:
    """A sketch from its stored text; InvalidInput naming the key if it is not one."""
    if not isinstance(text, str):
        raise InvalidInput(
            f"{key}={text!r:.60} is not a serialised sketch; expected base64 text of a "
            "DataSketches kll_floats_sketch"
        )
    try:
        return kll_floats_sketch.deserialize(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, RuntimeError) as exc:
        raise InvalidInput(
            f"{key}={text[:40]!r}... is not a serialised kll_floats_sketch ({exc}); expected "
            "base64 of kll_floats_sketch.serialize()"
        ) from exc


def percentiles_of(prefix: str, sketch: kll_floats_sketch) -> dict[str, float]:
    """The ``prefix``'s percentile keys read from ``sketch`` (nothing for an empty sketch)."""
    if sketch.is_empty():
        return {}
    values = sketch.get_quantiles([q / 100 for q in PERCENTILES])
    return {percentile_key(prefix, q): float(v) for q, v in zip(PERCENTILES, values, strict=True)}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def merge(parts: Iterable[Mapping[str, Any]], seconds: float) -> dict[str, Any]:
    """One technical record for a window of ``seconds`` from the records of its parts."""
    if not seconds > 0:
        raise InvalidInput(f"seconds={seconds!r} must be the merged window's positive length")
    merged = _Merged()
    for part in parts:
        for key, value in part.items():
            merged.add(part, key, value)
    return merged.record(seconds)


class _Merged:
    """What the parts of one window add up to so far, key by key (see ``merge``)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.maxima: dict[str, float] = {}
        self.sketches: dict[str, kll_floats_sketch] = {}
        # replica -> field -> [weighted sum, samples]
        self.means: dict[str, dict[str, list[float]]] = {}

    def add(self, part: Mapping[str, Any], key: str, value: Any) -> None:
        if key in _SKETCH_KEYS:
            sketch = decode_sketch(value, key)
            if key in self.sketches:
                self.sketches[key].merge(sketch)
            else:
                self.sketches[key] = sketch
        elif key in _PERCENTILE_KEYS or key == "tech.rps":
            return  # recomputed in ``record``, never combined
        elif key == "tech.in_flight_max" or key.endswith("_max"):
            _keep_max(self.maxima, key, value)
        elif key.startswith(_REPLICA):
            self._add_replica(part, key, value)
        elif key in ("tech.requests", "tech.failures") or key.startswith("tech.status_"):
            _add(self.counts, key, value)

    def _add_replica(self, part: Mapping[str, Any], key: str, value: Any) -> None:
        replica, _, field = key[len(_REPLICA) :].rpartition(".")
        if not replica:
            return
        if field in _SUMMED_REPLICA:
            _add(self.counts, key, value)
        elif field in _AVERAGED_REPLICA:
            number = _number(value)
            if number is None:
                return
            weight = _number(part.get(f"{_REPLICA}{replica}.samples")) or 1.0
            acc = self.means.setdefault(replica, {}).setdefault(field, [0.0, 0.0])
            acc[0] += number * weight
            acc[1] += weight
            _keep_max(self.maxima, f"{key}_max", value)

    def record(self, seconds: float) -> dict[str, Any]:
        counts = self.counts
        out: dict[str, Any] = dict(sorted(counts.items()))
        requests = counts.get("tech.requests", 0)
        out["tech.requests"] = requests
        out.setdefault("tech.failures", 0)
        out["tech.rps"] = requests / seconds
        for replica, fields in sorted(self.means.items()):
            samples = 0.0
            for field, (total, weight) in fields.items():
                mean = total / weight
                out[f"{_REPLICA}{replica}.{field}"] = round(mean) if field == "rss_bytes" else mean
                samples = max(samples, weight)
            out[f"{_REPLICA}{replica}.samples"] = int(samples)
        for key, value in sorted(self.maxima.items()):
            out[key] = int(value) if float(value).is_integer() else value
        for prefix in LATENCY_PREFIXES:
            sketch = self.sketches.get(sketch_key(prefix))
            if sketch is None or sketch.is_empty():
                continue
            out.update(percentiles_of(prefix, sketch))
            out[sketch_key(prefix)] = encode_sketch(sketch)
        return out


def _add(counts: dict[str, int], key: str, value: object) -> None:
    number = _number(value)
    if number is not None:
        counts[key] = counts.get(key, 0) + int(number)


def _keep_max(maxima: dict[str, float], key: str, value: object) -> None:
    number = _number(value)
    if number is not None and (key not in maxima or number > maxima[key]):
        maxima[key] = number


def sketch_of(values: Sequence[float] | np.ndarray[Any, Any]) -> kll_floats_sketch:
    """A fresh sketch holding ``values`` (one vector update)."""
    sketch = new_sketch()
    array = np.asarray(values, dtype=np.float32)
    if array.size:
        sketch.update(np.ascontiguousarray(array))
    return sketch
