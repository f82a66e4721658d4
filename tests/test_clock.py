"""The one wall clock (modelyard.clock) and that nothing else defines its own."""

from __future__ import annotations

import ast
import doctest
import time
from pathlib import Path

import modelyard.clock as clock_mod
from modelyard.clock import now_ms

SRC = Path(clock_mod.__file__).parent


def test_now_ms_is_epoch_milliseconds_from_the_wall_clock() -> None:
    before = time.time_ns() // 1_000_000
    now = now_ms()
    after = time.time_ns() // 1_000_000
    assert isinstance(now, int) and before <= now <= after + 1  # rounded to the nearest ms
    result = doctest.testmod(clock_mod, raise_on_error=False)
    assert result.attempted >= 1 and result.failed == 0


def test_now_ms_is_never_before_a_window_opened_with_round() -> None:
    """The reference's template scripts open a window with int(round(time.time() * 1000)) and
    then predict: the records' times, from now_ms, must not fall before that start."""
    for _ in range(2_000):
        start = round(time.time() * 1000)  # the template's int(round(...)), int already
        assert now_ms() >= start


def test_no_module_defines_its_own_now_ms() -> None:
    """A dozen private copies once disagreed on rounding; there is one now."""
    copies = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and node.name.strip("_") in (
                "now_ms",
                "wall_ms",
            ):
                copies.append(f"{path.relative_to(SRC)} {node.name}")
    assert copies == ["clock.py now_ms"]
