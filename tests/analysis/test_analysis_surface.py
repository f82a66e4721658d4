"""The public surface of modelyard.analysis: every listed name exists, and nothing does I/O."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import modelyard.analysis as analysis

MODULES = sorted(f"modelyard.analysis.{m.name}" for m in pkgutil.iter_modules(analysis.__path__))


def test_all_names_exist_and_nothing_else_is_public() -> None:
    assert len(set(analysis.__all__)) == len(analysis.__all__)  # ruff (RUF022) keeps it sorted
    for name in analysis.__all__:
        assert getattr(analysis, name) is not None, name
    public = {n for n in vars(analysis) if not n.startswith("_") and n != "annotations"}
    modules = {m.rsplit(".", 1)[1] for m in MODULES}
    assert public - modules == set(analysis.__all__)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_declares_all(module: str) -> None:
    mod = importlib.import_module(module)
    assert isinstance(mod.__all__, list) and mod.__all__
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_analysis_imports_nothing_above_the_bottom_floor() -> None:
    """analysis may use modelyard.errors and modelyard.store only: no server, runtime, tracking."""
    above = ("server", "cli", "runtime", "serving", "jobs", "tracking", "registry", "ui")
    for module in MODULES:
        path = Path(importlib.import_module(module).__file__ or "")
        source = path.read_text()
        for part in above:
            assert f"modelyard.{part}" not in source, (module, part)
