"""Every example in a docstring of ``src/modelyard`` runs, and shows what it returns.

Modules are found by looking for ``>>>`` in their source, so a new example runs without being
listed anywhere. A test rather than ``--doctest-modules``: that option would also import every
test module and every module of the package (the demo's sample project included) for doctest
collection on each ``pytest`` call; here only the modules with examples are imported, under the
suite's own warnings-as-errors filter.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules_with_examples() -> list[str]:
    found = []
    for path in sorted((SRC / "modelyard").rglob("*.py")):
        if ">>>" in path.read_text():
            parts = list(path.relative_to(SRC).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append(".".join(parts))
    return found


MODULES = _modules_with_examples()


def test_examples_are_found() -> None:
    assert "modelyard.version" in MODULES and "modelyard.analysis.concept" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{name} has '>>>' in its source but no docstring example doctest can find"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
