"""Alert rules over aggregate metrics, evaluated window by window (pure: no notification here).

A rule is one line: ``<metric> <op> <number> [for <k> windows]``, for example ``roc_auc < 0.7``,
``psi.* > 0.25`` (a glob over metric names: fires if any matching metric breaches), or
``label_coverage < 0.5 for 3 windows`` (only after three consecutive breaching windows).
Operators: ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``.

Each rule fires once when its condition has held for ``k`` consecutive windows, then stays quiet
until it recovers (a window where no matching metric breaches), which is reported once as well:
an alert that repeated every window would be muted by its readers. A window where the metric is
missing or NaN is no evidence either way: it neither counts toward ``k`` nor recovers the rule,
because a monitoring job that failed to compute a metric has not shown the model is fine.

``AlertEvaluator`` keeps the state between windows (``update(metrics)`` returns the events of that
window), so a scheduler can persist nothing but the evaluator between runs; ``evaluate`` runs a
whole sequence at once.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidInput

__all__ = ["AlertEvaluator", "AlertEvent", "Rule", "evaluate", "parse_rule"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_RULE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_*?\[\]][\w.*?\[\]\-]*)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:\s+for\s+(?P<windows>\d+)\s+windows?)?\s*$"
)


@dataclass(frozen=True, slots=True)
class Rule:
    """A parsed rule. ``metric`` may be a glob (``psi.*``)."""

    text: str
    metric: str
    op: str
    threshold: float
    windows: int = 1

    def breaching(self, metrics: Mapping[str, Any]) -> dict[str, float] | None:
        """Matching metrics that breach; None if no matching metric has a number (no evidence)."""
        names = (
            [n for n in metrics if fnmatch.fnmatchcase(n, self.metric)]
            if any(c in self.metric for c in "*?[")
            else [self.metric]
        )
        compare = _OPS[self.op]
        seen, bad = False, {}
        for name in names:
            value = metrics.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                continue
            seen = True
            if compare(float(value), self.threshold):
                bad[name] = float(value)
        return bad if seen else None


def parse_rule(text: str) -> Rule:
    """Parse ``<metric> <op> <number> [for <k> windows]``; InvalidInput says what is accepted."""
    match = _RULE.match(text) if isinstance(text, str) else None
    if not match:
        raise InvalidInput(
            f"alert rule {text!r} is not understood; write '<metric> <op> <number>' with an "
            "optional 'for <k> windows', e.g. 'roc_auc < 0.7', 'psi.* > 0.25' or "
            "'label_coverage < 0.5 for 3 windows' (operators: < <= > >= == !=)"
        )
    windows = int(match["windows"] or 1)
    if windows < 1:
        raise InvalidInput(f"alert rule {text!r}: 'for {windows} windows' must be at least 1")
    return Rule(text.strip(), match["metric"], match["op"], float(match["value"]), windows)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A rule fired or recovered at window ``window`` (its index in the sequence)."""

    window: int
    rule: str
    kind: str  # "fired" or "recovered"
    values: dict[str, float] = field(default_factory=dict)  # breaching metrics when fired


class AlertEvaluator:
    """Window-by-window state of a set of rules.

    >>> ev = AlertEvaluator(["roc_auc < 0.7 for 2 windows"])
    >>> [e.kind for w in [0.8, 0.6, 0.65, 0.6, 0.75] for e in ev.update({"roc_auc": w})]
    ['fired', 'recovered']
    """

    def __init__(self, rules: Iterable[str | Rule]) -> None:
        self.rules = [r if isinstance(r, Rule) else parse_rule(r) for r in rules]
        self.window = -1
        self._streak = [0] * len(self.rules)
        self._firing = [False] * len(self.rules)

    @property
    def firing(self) -> list[str]:
        return [r.text for r, on in zip(self.rules, self._firing, strict=True) if on]

    def update(self, metrics: Mapping[str, Any]) -> list[AlertEvent]:
        self.window += 1
        events = []
        for i, rule in enumerate(self.rules):
            bad = rule.breaching(metrics)
            if bad is None:
                continue  # no evidence this window
            if bad:
                self._streak[i] += 1
                if not self._firing[i] and self._streak[i] >= rule.windows:
                    self._firing[i] = True
                    events.append(AlertEvent(self.window, rule.text, "fired", bad))
            else:
                self._streak[i] = 0
                if self._firing[i]:
                    self._firing[i] = False
                    events.append(AlertEvent(self.window, rule.text, "recovered"))
        return events


def evaluate(rules: Iterable[str | Rule], windows: Sequence[Mapping[str, Any]]) -> list[AlertEvent]:
    """All events of ``rules`` over a sequence of per-window metric dicts, in window order."""
    evaluator = AlertEvaluator(rules)
    return [event for metrics in windows for event in evaluator.update(metrics)]
