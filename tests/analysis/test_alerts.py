"""Alert rules: parsing, firing once per episode, recovery, globs, consecutive windows."""

from __future__ import annotations

import math

import pytest

from modelyard.analysis import AlertEvaluator, Rule, evaluate, parse_rule
from modelyard.errors import InvalidInput


def test_parse_forms() -> None:
    assert parse_rule("roc_auc < 0.7") == Rule("roc_auc < 0.7", "roc_auc", "<", 0.7, 1)
    assert parse_rule(" psi.* > 0.25 ").metric == "psi.*"
    rule = parse_rule("label_coverage < 0.5 for 3 windows")
    assert (rule.op, rule.threshold, rule.windows) == ("<", 0.5, 3)
    assert parse_rule("errors >= 1e3 for 1 window").threshold == 1000.0
    assert parse_rule("delta != -2").threshold == -2.0
    for bad in ("roc_auc", "roc_auc << 1", "< 0.7", "auc < high", "x < 1 for 0 windows"):
        with pytest.raises(InvalidInput, match=r"not understood|at least 1"):
            parse_rule(bad)


def test_fires_once_per_episode_and_recovers_once() -> None:
    windows = [{"roc_auc": v} for v in (0.8, 0.6, 0.5, 0.55, 0.9, 0.95, 0.6)]
    events = evaluate(["roc_auc < 0.7"], windows)
    assert [(e.window, e.kind) for e in events] == [(1, "fired"), (4, "recovered"), (6, "fired")]
    assert events[0].values == {"roc_auc": 0.6}


def test_consecutive_windows_are_required() -> None:
    cov = [0.4, 0.4, 0.9, 0.4, 0.3, 0.2, 0.1, 0.8]
    events = evaluate(["label_coverage < 0.5 for 3 windows"], [{"label_coverage": c} for c in cov])
    assert [(e.window, e.kind) for e in events] == [(5, "fired"), (7, "recovered")]


def test_glob_matches_any_metric_and_reports_which() -> None:
    windows = [
        {"psi.age": 0.05, "psi.plan": 0.1},
        {"psi.age": 0.3, "psi.plan": 0.4, "roc_auc": 0.2},
        {"psi.age": 0.01, "psi.plan": 0.3},
        {"psi.age": 0.01, "psi.plan": 0.02},
    ]
    events = evaluate(["psi.* > 0.25"], windows)
    assert [(e.window, e.kind) for e in events] == [(1, "fired"), (3, "recovered")]
    assert events[0].values == {"psi.age": 0.3, "psi.plan": 0.4}


def test_missing_or_nan_is_no_evidence() -> None:
    ev = AlertEvaluator(["roc_auc < 0.7 for 2 windows", "psi.* > 0.2"])
    assert ev.update({"roc_auc": 0.5}) == []
    assert ev.update({"other": 1.0}) == []  # missing: the streak of 1 is kept
    assert [e.kind for e in ev.update({"roc_auc": 0.6})] == ["fired"]
    assert ev.update({"roc_auc": math.nan}) == []  # NaN does not recover it
    assert ev.firing == ["roc_auc < 0.7 for 2 windows"]
    assert [e.kind for e in ev.update({"roc_auc": 0.9, "flag": True})] == ["recovered"]
    assert ev.window == 4 and ev.firing == []


def test_independent_rules_keep_independent_state() -> None:
    events = evaluate(
        ["a > 1", "b > 1 for 2 windows"], [{"a": 2, "b": 2}, {"a": 0, "b": 2}, {"a": 0, "b": 0}]
    )
    assert [(e.window, e.rule, e.kind) for e in events] == [
        (0, "a > 1", "fired"),
        (1, "a > 1", "recovered"),
        (1, "b > 1 for 2 windows", "fired"),
        (2, "b > 1 for 2 windows", "recovered"),
    ]
