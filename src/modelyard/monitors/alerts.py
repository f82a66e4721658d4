"""Alerts of monitors: rules evaluated over a monitor's windows, stored, and sent once per episode.

After a monitor writes, its rules (``modelyard.analysis.alerts`` syntax) are evaluated over every
window result it keeps, in window order, from the first. Replaying the whole history (a few
thousand small dicts at most) instead of keeping evaluator state is what makes recomputed windows
(late labels) count: a window whose AUC rose above the threshold once its labels arrived turns an
alert it had started into one that never happened, which is then marked resolved.

An *episode* of a rule starts at the window where it fires and ends at the window where it
recovers. Each is one row of table ``alerts`` (kept by the registry, ``Registry.monitors``;
keyed by monitor, rule and first window), with
``state`` ``firing`` or ``resolved``, the first window's start, the end of the last breaching
window, the worst breaching value, and when it fired and resolved. A notification goes to the
spec's ``notify`` targets, through the jobs part's ``Notifier`` (webhook POST with a JSON body,
retried with back-off), once when the episode is first stored and once when it resolves: never
once per window, so readers do not learn to mute it.

A window whose group had too few rows (``min_labels``, ``min_predictions``; see
``modelyard.monitors.compute.apply_minimums``) holds none of that group's values, so the rules on
them neither fire nor resolve there: the episode keeps its state. ``not_evaluated`` says which
rules a window skipped and why, for the run's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.analysis import AlertEvaluator
from modelyard.analysis.alerts import parse_rule
from modelyard.monitors._store import monitor_store
from modelyard.registry import Registry
from modelyard.specs.monitor import MonitorSpec
from modelyard.specs.monitor_outputs import GROUP_OUTPUTS, insufficient_groups, matches
from modelyard.store.base import MetricsStore

__all__ = ["Episode", "evaluate_monitor", "list_alerts", "not_evaluated", "send_notifications"]


@dataclass
class Episode:
    """One firing of one rule as derived from the window history."""

    rule: str
    first_start_ms: int
    last_end_ms: int
    value: float | None
    breaching: dict[str, float] = field(default_factory=dict)
    resolved_start_ms: int | None = None


def _worst(op: str, values: dict[str, float]) -> float | None:
    if not values:
        return None
    return max(values.values()) if op in (">", ">=") else min(values.values())


def derive_episodes(
    rules: Sequence[str], windows: Sequence[tuple[int, int, dict[str, Any]]]
) -> list[Episode]:
    """Episodes of ``rules`` over ``(start_ms, end_ms, metrics)`` windows in time order."""
    evaluator = AlertEvaluator(rules)
    open_: dict[str, Episode] = {}
    done: list[Episode] = []
    by_text = {r.text: r for r in evaluator.rules}
    for start, end, metrics in windows:
        for event in evaluator.update(metrics):
            rule = by_text[event.rule]
            if event.kind == "fired":
                open_[event.rule] = Episode(
                    event.rule, start, end, _worst(rule.op, event.values), dict(event.values)
                )
            else:
                episode = open_.pop(event.rule)
                episode.resolved_start_ms = start
                done.append(episode)
        for text, episode in open_.items():
            bad = by_text[text].breaching(metrics)
            if bad and episode.first_start_ms != start:
                episode.last_end_ms = end
                worst = _worst(by_text[text].op, bad)
                if worst is not None and episode.value is not None:
                    pick = max if by_text[text].op in (">", ">=") else min
                    episode.value = pick(episode.value, worst)
    return done + list(open_.values())


def not_evaluated(spec: MonitorSpec, metrics: dict[str, Any]) -> dict[str, str]:
    """The spec's alert rules that ``metrics`` (one window) gives no evidence for because a
    metric group they watch had too few rows, each with the group's reason."""
    short = insufficient_groups(metrics)
    out: dict[str, str] = {}
    for text in spec.alerts if short else ():
        rule = parse_rule(text)
        if rule.breaching(metrics) is not None:
            continue  # evaluated: another group gave a value
        for group, why in short.items():
            outputs = GROUP_OUTPUTS.get(group)
            if outputs is not None and any(matches(rule.metric, o) for o in outputs(spec)):
                out[text] = why
                break
    return out


def evaluate_monitor(
    store: MetricsStore, monitor: str, deployment_crn: str, rules: Sequence[str]
) -> list[dict[str, Any]]:
    """Reconcile the stored alerts (``Registry.monitors``) with the episodes of ``rules`` over the
    monitor's results.

    Returns the notifications due: new episodes (state as derived) and episodes that resolved
    since they were stored, each as the alert row after the change.
    """
    if not rules:
        return []
    records = Registry(store).monitors
    # A partial window (computed before it ended) is no evidence yet: a few predictions of an
    # open minute would fire and resolve alerts that its complete result may never support.
    windows = [
        (start, end, metrics)
        for start, end, metrics in records.results(monitor)
        if not metrics.get("window.partial")
    ]
    ids = records.reconcile_alerts(monitor, deployment_crn, derive_episodes(rules, windows))
    if not ids:
        return []
    by_id = {a["id"]: a for a in records.alerts(monitor=monitor, all_states=True)}
    return [by_id[i] for i in ids]


def send_notifications(
    targets: Sequence[str], alerts: Sequence[dict[str, Any]], *, wait_s: float = 30.0
) -> None:
    """POST each alert to each target (jobs' ``Notifier``), waiting up to ``wait_s`` for delivery.

    A monitor run is a short process, so it waits for the notifier's queue before returning;
    a receiver that stays down is logged by the notifier, never raised.
    """
    if not targets or not alerts:
        return
    from modelyard.jobs.notify import Notifier

    notifier = Notifier(attempts=3, backoff_s=0.5)
    try:
        for alert in alerts:
            notifier.send(targets, {"kind": "modelyard.alert", **alert})
        notifier.wait_idle(wait_s)
    finally:
        notifier.close(1.0)


def list_alerts(
    *,
    store: MetricsStore | None = None,
    all_states: bool = False,
    monitor: str | None = None,
    deployment_crn: str | None = None,
) -> list[dict[str, Any]]:
    """Alerts, newest first: only those firing unless ``all_states``."""
    records = Registry(monitor_store(store)).monitors
    return records.alerts(all_states=all_states, monitor=monitor, deployment_crn=deployment_crn)
