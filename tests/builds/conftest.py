"""Fixtures for build tests: project folders written file by file, and a local pip package.

The local package has a real PEP 517 build back-end inside its own folder (``backend-path``) and
no build requirements, so pip builds and installs it with its default, isolated build and never
needs an index: the environment tests run offline.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

_BACKEND = """
import base64, hashlib, os, zipfile

NAME, VERSION = "modelyard_tinypkg", "1.0"
DIST = f"{NAME}-{VERSION}.dist-info"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "module.py"), "rb") as handle:
        module = handle.read()
    files = {
        f"{NAME}/__init__.py": module,
        f"{DIST}/METADATA": (
            f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode()
        ),
        f"{DIST}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: tests\\nRoot-Is-Purelib: true\\n"
        b"Tag: py3-none-any\\n",
    }
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append(f"{DIST}/RECORD,,")
        wheel.writestr(f"{DIST}/RECORD", "\\n".join(record) + "\\n")
    return name
"""


def write_files(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (relative path -> text or bytes) under ``root``; return ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """``project(files, name='project')`` writes a project folder and returns its path."""

    def make(files: dict[str, str | bytes], name: str = "project") -> Path:
        return write_files(tmp_path / name, files)

    return make


@pytest.fixture
def tiny_package(tmp_path: Path) -> Path:
    """A local package ``modelyard_tinypkg`` (``VALUE = 42``) that pip installs without an index."""
    return write_files(
        tmp_path / "tinypkg",
        {
            "pyproject.toml": """
                [build-system]
                requires = []
                build-backend = "backend"
                backend-path = ["."]
            """,
            "backend.py": _BACKEND,
            "module.py": "VALUE = 42\n",
        },
    )
