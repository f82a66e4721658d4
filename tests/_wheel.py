"""A pure-Python wheel of one module, written by hand: a requirement tests can install offline
(no build backend, no package index)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

__all__ = ["make_wheel"]


def make_wheel(folder: Path, name: str = "tinymy", version: str = "0.1") -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` into ``folder``: one module ``name`` whose
    ``VALUE`` is ``'from the wheel'``; the same bytes each time."""
    files = {
        f"{name}.py": b"VALUE = 'from the wheel'\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ).encode(),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: modelyard-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = f"{name}-{version}.dist-info/RECORD"
    rows = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(data)}")
    rows.append(f"{record},,")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in [*files.items(), (record, ("\n".join(rows) + "\n").encode())]:
            archive.writestr(_entry(path), data)
    return wheel


def _entry(path: str) -> zipfile.ZipInfo:
    """A member with a fixed date: the same wheel is the same bytes, whenever it is made."""
    info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    return info
