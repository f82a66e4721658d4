"""Two builds (or two periods) of a model side by side, for ``GET /api/v1/models/{name}/compare``
and the dashboard's compare page: the monitored metric with its 95 % interval, latency, error
rate and the features' distributions, each difference with its interval, and a verdict a person
deciding on a rollback can read ("build 2's ROC AUC is 0.08 lower than build 1's (95 % CI
0.05 to 0.11)").

A side is ``build:<id or number>`` (every deployment of that build, while it served) or
``period:<start_ms>-<end_ms>`` (whatever served then). Without sides: the active build against
the one it replaced; a model with a single build compares the period before its first alert's
first window with the period from there on (or the two halves of its monitored time).

Cost stays bounded whatever the traffic: the metric comes from the monitors' window records (one
per window; a side's value pools its windows' values weighted by the inverse of their interval's
variance, the fixed-effect pooling of the per-window DeLong or bootstrap intervals), latency and
errors from the gateway's ``tech.*`` intervals, and each feature's histogram from the store's
``distribution`` over at most the last ``DISTRIBUTION_SPAN_MS`` of each side. Each deployment's
aggregate records are read once per answer (one column-wise scan, split into monitor windows and
gateway intervals; the sides are sliced from it). Latency differences get a bootstrap interval
over hours (``LATENCY_METHOD`` says how, on the page too).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelyard import clock
from modelyard.errors import InvalidInput
from modelyard.registry import Deployment, Model
from modelyard.store.base import Query
from modelyard.views.drift import METHODS
from modelyard.views.timeline import build_names, main_metric, read_aggregates
from modelyard.web.services import Services

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "DISTRIBUTION_SPAN_MS",
    "LATENCY_METHOD",
    "LOWER_IS_BETTER",
    "compare",
    "parse_side",
]

Z95 = 1.959963984540054
DISTRIBUTION_SPAN_MS = 2 * 3_600_000
MAX_FEATURES = 12  # features drawn (the most drifted first)
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mape", "log_loss", "brier", "ece"})
HOUR_MS = 3_600_000
BOOTSTRAP_RESAMPLES = 400
MIN_BLOCKS = 8  # hours with traffic each side needs for a latency interval
LATENCY_METHOD = (  # what the page says of the latency figures
    "Latency p50/p99: each side's request-weighted mean of the gateway's per-interval "
    "percentiles; the difference's 95 % interval is a bootstrap over hours (hours taken as "
    f"independent), none with fewer than {MIN_BLOCKS} hours of traffic on a side."
)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class _Span:
    """One deployment's aggregate records over [start, end], split, each list oldest first."""

    start: int
    end: int
    windows: list[dict[str, Any]]
    window_starts: list[int]
    tech: list[dict[str, Any]]
    tech_starts: list[int]


class _Reader:
    """Each deployment's aggregate records read once per answer (``timeline.read_aggregates``)
    and kept; a later range inside one already read is sliced from it, not read again (the
    default sides read the whole monitored time first, then both sides come from it)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._read: dict[str, list[_Span]] = {}

    def _span(self, crn: str, start: int, end: int) -> _Span:
        for got in self._read.get(crn, []):
            if got.start <= start and end <= got.end:
                return got
        windows, tech = read_aggregates(self._services, crn, start, end)
        got = _Span(
            start,
            end,
            windows,
            [w["start_ms"] for w in windows],
            tech,
            [t["start_ms"] for t in tech],
        )
        self._read.setdefault(crn, []).append(got)
        return got

    def windows(self, crn: str, start: int, end: int) -> list[dict[str, Any]]:
        """The monitor windows of ``crn`` starting in [start, end], oldest first."""
        got = self._span(crn, start, end)
        lo, hi = (
            bisect.bisect_left(got.window_starts, start),
            bisect.bisect_right(got.window_starts, end),
        )
        return got.windows[lo:hi]

    def tech(self, crn: str, start: int, end: int) -> list[dict[str, Any]]:
        """The gateway's intervals of ``crn`` starting in [start, end], oldest first."""
        got = self._span(crn, start, end)
        lo, hi = (
            bisect.bisect_left(got.tech_starts, start),
            bisect.bisect_right(got.tech_starts, end),
        )
        return got.tech[lo:hi]


# -- sides ----------------------------------------------------------------------------------------


def parse_side(
    text: str, deployments: list[Deployment], names: dict[str, str], now_ms: int, letter: str = "A"
) -> dict[str, Any]:
    """A side: its label and the (deployment, start, end) spans it covers."""
    kind, _, value = text.partition(":")
    if kind == "build":
        return _build_side(value, deployments, names, now_ms)
    if kind == "period":
        lo, _, hi = value.partition("-")
        if not (lo.isdigit() and hi.isdigit()) or int(lo) > int(hi):
            raise InvalidInput(
                f"side {text!r} is not accepted; give period:<start_ms>-<end_ms> (epoch ms, "
                "start <= end)"
            )
        start, end = int(lo), int(hi)
        return {
            "spec": text,
            "kind": "period",
            "label": f"period {letter}",
            "range": f"{_short(start)} to {_short(end)}",
            "spans": [(d.crn, start, end) for d in deployments],
            "start_ms": start,
            "end_ms": end,
        }
    raise InvalidInput(
        f"side {text!r} is not accepted; give build:<build id or number> or "
        "period:<start_ms>-<end_ms>"
    )


def _short(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _build_side(
    value: str, deployments: list[Deployment], names: dict[str, str], now_ms: int
) -> dict[str, Any]:
    ordered = list(names)  # oldest first
    crn = None
    if value.isdigit() and 1 <= int(value) <= len(ordered):
        crn = ordered[int(value) - 1]
    else:
        crn = next((c for c in ordered if c.rsplit("/", 1)[-1].startswith(value) and value), None)
    if crn is None:
        known = ", ".join(f"{i} ({c.rsplit('/', 1)[-1][:8]})" for i, c in enumerate(ordered, 1))
        raise InvalidInput(
            f"build {value!r} is not a build of this model; accepted: build:<number or id>, "
            f"one of {known or 'none'}"
        )
    spans = []
    for d in deployments:
        if d.build_crn == crn:
            serving = d.state.value in ("active", "deploying")
            spans.append((d.crn, d.created_ms, now_ms if serving else d.updated_ms))
    return {
        "spec": f"build:{value}",
        "kind": "build",
        "label": names[crn].split(" (")[0],
        "range": f"{_short(min((s for _, s, _ in spans), default=0))} to "
        f"{_short(max((e for _, _, e in spans), default=0))}",
        "build": names[crn],
        "spans": spans,
        "start_ms": min((s for _, s, _ in spans), default=0),
        "end_ms": max((e for _, _, e in spans), default=0),
    }


def _default_sides(
    services: Services,
    reader: _Reader,
    deployments: list[Deployment],
    names: dict[str, str],
    now_ms: int,
) -> tuple[str, str]:
    """The active build against the one before it; one build: before/after its first alert."""
    served = []
    for d in sorted(deployments, key=lambda d: d.created_ms):
        if d.build_crn not in served:
            served.append(d.build_crn)
        else:  # a rollback: it is the latest again
            served.remove(d.build_crn)
            served.append(d.build_crn)
    ordered = list(names)
    if len(served) >= 2:
        return f"build:{ordered.index(served[-2]) + 1}", f"build:{ordered.index(served[-1]) + 1}"
    windows = sorted(
        (w for d in deployments for w in reader.windows(d.crn, 0, now_ms)),
        key=lambda w: (w["start_ms"], w["end_ms"]),
    )
    if not windows:  # nothing monitored yet: the two halves of the time it has served
        first = min((d.created_ms for d in deployments), default=now_ms - 1)
        middle = (first + now_ms) // 2
        return f"period:{first}-{middle}", f"period:{middle + 1}-{max(middle + 1, now_ms)}"
    first, last = windows[0]["start_ms"], windows[-1]["end_ms"]
    starts = [
        a["first_window_start_ms"]
        for d in deployments
        for a in services.registry.monitors.alerts(all_states=True, deployment_crn=d.crn)
        if a.get("first_window_start_ms")
    ]
    split = min((s for s in starts if first < s <= last), default=(first + last) // 2)
    return f"period:{first}-{split - 1}", f"period:{split}-{max(split, last)}"


# -- what each side measured ----------------------------------------------------------------------


def _pooled(windows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The windows' values pooled: inverse-variance weights from their intervals (fixed effect);
    without intervals, the mean with a normal interval over the windows' spread."""
    values, weights = [], []
    for w in windows:
        m = w["metrics"]
        value = _finite(m.get(metric))
        low, high = _finite(m.get(f"{metric}_ci_low")), _finite(m.get(f"{metric}_ci_high"))
        if value is None:
            continue
        values.append(value)
        if low is not None and high is not None and high > low:
            weights.append(1.0 / ((high - low) / (2 * Z95)) ** 2)
    if not values:
        return {"value": None, "se": None, "low": None, "high": None, "windows": 0}
    se: float | None
    if len(weights) == len(values):
        total = sum(weights)
        mean = sum(v * w for v, w in zip(values, weights, strict=True)) / total
        se = math.sqrt(1.0 / total)
        method = "pooled window intervals (inverse-variance)"
    else:
        mean = sum(values) / len(values)
        spread = (
            math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else 0.0
        )
        se = spread / math.sqrt(len(values)) if len(values) > 1 else None
        method = "mean of windows (normal interval over windows)"
    return {
        "value": mean,
        "se": se,
        "low": mean - Z95 * se if se is not None else None,
        "high": mean + Z95 * se if se is not None else None,
        "windows": len(values),
        "method": method,
    }


def _side_windows(reader: _Reader, side: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for crn, start, end in side["spans"]:
        out += [w for w in reader.windows(crn, start, end) if w["end_ms"] <= end + 1]
    return sorted(out, key=lambda w: w["start_ms"])


def _tech(reader: _Reader, side: dict[str, Any]) -> dict[str, Any]:
    """Requests, failures and latency p50/p99 (each the request-weighted mean of the intervals'
    own percentiles) of the side's gateway intervals; ``_blocks`` holds the same sums per hour
    for the latency intervals (``_latency_difference``)."""
    requests = failures = 0.0
    sums = {"p50": 0.0, "p99": 0.0}
    hours: dict[int, list[float]] = {}
    for crn, start, end in side["spans"]:
        for interval in reader.tech(crn, start, end):
            m = interval["metrics"]
            n = _finite(m.get("tech.requests"))
            if n is None:
                continue
            p50 = n * (_finite(m.get("tech.latency_p50_ms")) or 0.0)
            p99 = n * (_finite(m.get("tech.latency_p99_ms")) or 0.0)
            requests += n
            failures += _finite(m.get("tech.failures")) or 0.0
            sums["p50"] += p50
            sums["p99"] += p99
            block = hours.setdefault(interval["start_ms"] // HOUR_MS, [0.0, 0.0, 0.0])
            block[0] += n
            block[1] += p50
            block[2] += p99
    rate = failures / requests if requests else None
    return {
        "requests": int(requests),
        "failures": int(failures),
        "error_rate": rate,
        "p50_ms": sums["p50"] / requests if requests else None,
        "p99_ms": sums["p99"] / requests if requests else None,
        "_blocks": [b for b in hours.values() if b[0] > 0],
    }


def _features(windows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per feature: its mean drift effect per method and the share of windows flagging it."""
    found: dict[str, dict[str, list[float]]] = {}
    flagged: dict[str, int] = {}
    for w in windows:
        for key, value in w["metrics"].items():
            method, _, feature = key.partition(".")
            number = _finite(value)
            if method in METHODS and feature and number is not None:
                found.setdefault(feature, {}).setdefault(method, []).append(number)
        for feature in w["metrics"].get("drift.flagged_features") or []:
            flagged[str(feature)] = flagged.get(str(feature), 0) + 1
    return {
        f: {
            "effects": {m: sum(v) / len(v) for m, v in methods.items()},
            "flagged_share": flagged.get(f, 0) / len(windows) if windows else None,
        }
        for f, methods in found.items()
    }


def _distribution(services: Services, side: dict[str, Any], feature: str) -> dict[str, Any]:
    """The feature's histogram over the last ``DISTRIBUTION_SPAN_MS`` of the side's spans."""
    edges: list[float] = []
    counts: list[int] = []
    total = 0
    exact = True
    clipped = False
    for crn, start, end in side["spans"]:
        lo = max(start, end - DISTRIBUTION_SPAN_MS)
        clipped = clipped or lo > start
        query = Query(deployment_crn=crn, start_ms=lo, end_ms=end)
        found = services.store.distribution(query, feature, bins=20)
        if found.count > total:  # the busiest span's histogram (spans have their own bins)
            edges, counts, total, exact = (
                found.bin_edges,
                found.bin_counts,
                found.count,
                found.exact,
            )
    shares = [c / total for c in counts] if total else []
    return {"count": total, "exact": exact, "clipped": clipped, "edges": edges, "shares": shares}


def _side_summary(
    reader: _Reader, side: dict[str, Any], metric: str | None, windows: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "spec": side["spec"],
        "kind": side["kind"],
        "label": side["label"],
        "range": side["range"],
        "build": side.get("build"),
        "start_ms": side["start_ms"],
        "end_ms": side["end_ms"],
        "windows": len(windows),
        "n": int(sum(_finite(w["metrics"].get("n")) or 0 for w in windows)),
        "metric": _pooled(windows, metric) if metric else None,
        "tech": _tech(reader, side),
        "features": _features(windows),
        "_windows": windows,
    }


# -- differences and the verdict ------------------------------------------------------------------


def _difference(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """b - a with a normal 95 % interval from the two standard errors (independent sides)."""
    if not a or not b or a["value"] is None or b["value"] is None:
        return None
    diff = b["value"] - a["value"]
    if a["se"] is None or b["se"] is None:
        return {"value": diff, "low": None, "high": None}
    se = math.hypot(a["se"], b["se"])
    return {"value": diff, "low": diff - Z95 * se, "high": diff + Z95 * se}


def _rate_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    """Error rate b - a with the normal (Wald) interval of a difference of two proportions."""
    if a["error_rate"] is None or b["error_rate"] is None:
        return None
    pa, pb = a["error_rate"], b["error_rate"]
    se = math.sqrt(pa * (1 - pa) / a["requests"] + pb * (1 - pb) / b["requests"])
    diff = pb - pa
    return {"value": diff, "low": diff - Z95 * se, "high": diff + Z95 * se}


def _latency_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Latency p50 and p99, b - a, each with a 95 % percentile-bootstrap interval over hours:
    each side's hours (request counts and request-weighted percentile sums) are resampled
    ``BOOTSTRAP_RESAMPLES`` times, so the interval carries the variation between hours (and
    the correlation of the intervals within one); hours are taken as independent, so a slow
    drift over the days is not in it. Fewer than ``MIN_BLOCKS`` hours with traffic on either
    side: no interval."""
    out: dict[str, Any] = {}
    blocks = [np.asarray(side.pop("_blocks"), dtype=np.float64).reshape(-1, 3) for side in (a, b)]
    for q, column in (("p50_ms", 1), ("p99_ms", 2)):
        if a[q] is None or b[q] is None:
            out[q] = None
            continue
        diff = b[q] - a[q]
        out[q] = {"value": diff, "low": None, "high": None}
        if min(len(x) for x in blocks) < MIN_BLOCKS:
            continue
        rng = np.random.default_rng(0)  # the same answer for the same data
        means = []
        for x in blocks:
            picks = rng.integers(0, len(x), size=(BOOTSTRAP_RESAMPLES, len(x)))
            means.append(x[picks, column].sum(axis=1) / x[picks, 0].sum(axis=1))
        low, high = np.percentile(means[1] - means[0], [2.5, 97.5])
        out[q].update(low=float(low), high=float(high))
    return out


def _verdict(metric: str, diff: dict[str, Any] | None, a: dict[str, Any], b: dict[str, Any]) -> str:
    """One sentence a person can act on, naming the sides, the direction and the interval."""
    if diff is None:
        return f"No {metric} on both sides yet: the monitor has no labelled windows for one."
    name = _METRIC_NAMES.get(metric, metric)
    size = abs(diff["value"])
    word = "higher" if diff["value"] > 0 else "lower"
    if diff["low"] is None or diff["high"] is None:
        return f"{_cap(b['label'])}'s {name} is {size:.3f} {word} than {a['label']}'s."
    lo, hi = sorted((abs(diff["low"]), abs(diff["high"])))
    interval = f"95 % CI {lo:.3f} to {hi:.3f}"
    if diff["low"] <= 0 <= diff["high"]:
        return (
            f"No clear difference in {name}: {b['label']}'s is {size:.3f} {word} than "
            f"{a['label']}'s, and the 95 % interval ({diff['low']:+.3f} to {diff['high']:+.3f}) "
            "includes no difference."
        )
    worse = (diff["value"] > 0) == (metric in LOWER_IS_BETTER)
    tail = f" {_cap(b['label'])} is worse." if worse else f" {_cap(b['label'])} is better."
    return (
        f"{_cap(b['label'])}'s {name} is {size:.3f} {word} than {a['label']}'s ({interval}).{tail}"
    )


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


_METRIC_NAMES = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "rmse": "RMSE", "mae": "MAE"}


def _feature_rows(
    services: Services, a: dict[str, Any], b: dict[str, Any], sides: tuple[Any, Any]
) -> list[dict[str, Any]]:
    """Per feature, both sides' drift effects and histograms, the most changed first."""
    names = sorted(set(a["features"]) | set(b["features"]))

    def change(f: str) -> float:
        ea = a["features"].get(f, {}).get("effects", {})
        eb = b["features"].get(f, {}).get("effects", {})
        return max((abs(eb.get(m, 0.0) - ea.get(m, 0.0)) for m in {*ea, *eb}), default=0.0)

    rows = []
    for feature in sorted(names, key=change, reverse=True)[:MAX_FEATURES]:
        rows.append(
            {
                "feature": feature,
                "a": a["features"].get(feature),
                "b": b["features"].get(feature),
                "a_hist": _distribution(services, sides[0], feature),
                "b_hist": _distribution(services, sides[1], feature),
            }
        )
    return rows


def compare(
    services: Services,
    name: str,
    a: str | None = None,
    b: str | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """Side ``a`` against side ``b`` of model ``name`` (see the module docstring); the caller's
    right to read the model is checked before."""
    now = clock.now_ms() if now_ms is None else now_ms
    model: Model = services.registry.get_model(name)
    deployments = services.registry.list_deployments(model.crn)
    names = build_names(services, model)
    reader = _Reader(services)
    if a is None or b is None:
        default_a, default_b = _default_sides(services, reader, deployments, names, now)
        a, b = a or default_a, b or default_b
    sides = (
        parse_side(a, deployments, names, now, "A"),
        parse_side(b, deployments, names, now, "B"),
    )
    found = [_side_windows(reader, side) for side in sides]
    metric = main_metric(found[0] + found[1])
    left, right = (_side_summary(reader, s, metric, w) for s, w in zip(sides, found, strict=True))
    metric_diff = _difference(left["metric"], right["metric"])
    rate_diff = _rate_difference(left["tech"], right["tech"])
    latency = _latency_difference(left["tech"], right["tech"])
    features = _feature_rows(services, left, right, sides)
    for side in (left, right):
        side.pop("_windows")
    return {
        "model": model.name,
        "builds": [{"number": i, "name": n} for i, n in enumerate(names.values(), 1)],
        "metric": metric,
        "lower_is_better": metric in LOWER_IS_BETTER if metric else None,
        "a": left,
        "b": right,
        "difference": {
            "metric": metric_diff,
            "error_rate": rate_diff,
            **latency,
            "latency_method": LATENCY_METHOD,
        },
        "verdict": _verdict(metric, metric_diff, left, right)
        if metric
        else "No monitor "
        "metric in either side: a monitor job with classification or regression metrics "
        "writes one per window.",
        "features": features,
    }
