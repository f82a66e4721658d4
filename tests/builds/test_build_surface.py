"""The public surface of builds: the docs example runs, and ``__all__`` lists real names."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import modelyard.builds

DOC = Path(__file__).resolve().parents[2] / "docs" / "builds.md"
MODULES = ["builder", "environments", "snapshot", "smoke", "_steps"]


def test_the_example_in_docs_builds_md_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (snippet,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, str(DOC), "exec"), {"__name__": "docs_builds"})
    assert (tmp_path / "churn-project" / "predict.py").is_file()


@pytest.mark.parametrize("name", ["", *MODULES])
def test_every_name_in_all_exists(name: str):
    module = importlib.import_module(f"modelyard.builds.{name}" if name else "modelyard.builds")
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing


def test_the_package_exports_the_build_entry_points():
    assert {"build", "snapshot_project", "ensure_environment", "BuildResult"} <= set(
        modelyard.builds.__all__
    )
