"""The version is written once (pyproject.toml) and read from the installed metadata, lazily."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import modelyard
from modelyard.version import package_version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_every_way_to_ask_gives_the_pyproject_version() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert package_version() == modelyard.__version__ == declared
    from modelyard import __version__

    assert __version__ == declared


def test_import_modelyard_does_not_read_the_metadata() -> None:
    code = (
        "import modelyard, modelyard.version as v; "
        "assert v.package_version.cache_info().currsize == 0; "
        "modelyard.__version__; "
        "assert v.package_version.cache_info().currsize == 1"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
