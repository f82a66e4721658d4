"""A build's requirements as the ``pip`` field of a Ray runtime env (replicas and job runs).

On the local runtime a build with a requirements file runs in a virtual environment the build
makes on the server (``builds/environments.py``). On Ray the nodes cannot use that folder, so the
replica's actor (or the run's job) carries the requirements in its runtime env's ``pip`` field,
as a Ray user would write it: every node that hosts one builds the virtualenv itself, once per
distinct requirements (Ray caches it by the hash of the ``pip`` field), from the node's Python,
which sees the node's own packages (Modelyard and Ray) as the local environment sees the base.

Ray runs pip from an empty folder, not from the snapshot, so a relative path in the requirements
(``--find-links wheels``, ``./pkg``, ``-r more.txt``, ``-e .``) that names something in the
snapshot is anchored to ``${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}``, which pip expands to where the
node unpacked the snapshot: the paths mean what they mean for ``pip install -r`` run from the
project, as locally. Such requirements then carry a content hash in a comment line, so changed
files get a new environment (the text alone would not change): the hash of the files they name
when they name only wheel folders (``--find-links``) and archives, so a new build with the same
requirements and the same wheels reuses the node's environment (a new one costs a copy of the
node's virtualenv, the whole of it when the node runs from one, and the install); the snapshot's
hash when they name anything else (``-r``, ``-c``, ``-e``, a project folder), whose content pip
may read beyond the path named.

``uv`` (Ray's other field) is not used: Ray installs ``uv`` itself from the package index into
every environment it makes unless the node's Python already has it, so it cannot run offline.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput

__all__ = [
    "REQUIREMENTS_ENV",
    "STILL_INSTALLING",
    "WORKING_DIR_VAR",
    "install_failure",
    "pip_field",
    "pip_lines",
    "requirements_of",
]

# Set by the controller (``serving/controller/replica_specs.py``) for a build with requirements,
# and by the job runner for a job with requirements: the file's path inside the snapshot.
REQUIREMENTS_ENV = "MODELYARD_BUILD_REQUIREMENTS"
WORKING_DIR_VAR = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"
# Options whose value is a path (pip's short and long spellings).
_PATH_OPTIONS = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable",
                 "-f", "--find-links")  # fmt: skip
# Why a replica with requirements was not running at the deploy deadline.
STILL_INSTALLING = (
    "the cluster has the resources it asks for; the node was still installing the build's "
    "requirements (Ray's pip runtime env): raise the deadline for large requirements"
)
_PIP_OPTIONS = ["--disable-pip-version-check", "--no-cache-dir", "--no-input"]
# What pip reads no more of than the path names: a folder of wheels to pick from, an archive.
_LINKS = ("-f", "--find-links")
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar")


def pip_lines(text: str) -> list[str]:
    """The lines pip reads from a requirements text: continuations joined, comments and blank
    lines dropped, order kept."""
    joined = re.sub(r"\\\r?\n", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        if line:
            lines.append(" ".join(line.split()))
    return lines


def _in_folder(value: str, folder: Path) -> bool:
    """Whether ``value`` is a relative path naming something inside ``folder``."""
    if not value or "://" in value or value.startswith(("/", "~", "$")):
        return False
    try:
        path = (folder / value).resolve()
        return path.is_relative_to(folder.resolve()) and path.exists()
    except (OSError, ValueError):
        return False


def _anchor(line: str, folder: Path) -> tuple[str, tuple[str, str] | None]:
    """``line`` with a relative path into ``folder`` made relative to the node's working dir,
    and the ``(option, path)`` it names in ``folder`` (option ``""``: a requirement's path)."""
    for option in _PATH_OPTIONS:
        for sep in ("=", " ", ""):
            head = option + sep
            if sep == "" and (option.startswith("--") or len(line) <= len(head)):
                continue
            if line.startswith(head):
                value = line[len(head) :].strip()
                if _in_folder(value, folder):
                    return f"{option} {WORKING_DIR_VAR}/{value}", (option, value)
                return line, None
    if line.startswith("-"):
        return line, None
    target = line.split(";", 1)[0].strip()
    looks_like_path = target.startswith(".") or "/" in target
    path = target.split("[", 1)[0]
    if looks_like_path and _in_folder(path, folder):
        return f"{WORKING_DIR_VAR}/{line}", ("", path)
    return line, None


def _files_digest(named: list[tuple[str, str]], folder: Path) -> str | None:
    """The hash of the files the paths name, when they are only wheel folders and archives
    (None: a path whose content pip may read beyond it, or one that cannot be read)."""
    digest = hashlib.sha256()
    for option, value in sorted(named):
        path = folder / value
        if option not in _LINKS and not (path.is_file() and value.endswith(_ARCHIVES)):
            return None
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        try:
            for file in files:
                digest.update(f"{option} {file.relative_to(folder).as_posix()}\0".encode())
                digest.update(hashlib.sha256(file.read_bytes()).digest())
        except (OSError, ValueError):
            return None
    return digest.hexdigest()


def requirements_of(spec_env: dict[str, str], folder: str | Path | None, what: str) -> list[str]:
    """The lines of the requirements file ``spec_env`` names (none: no requirements)."""
    relative = spec_env.get(REQUIREMENTS_ENV)
    if not relative:
        return []
    if folder is None:
        raise InvalidInput(
            f"{what} has requirements ({relative!r}) but no snapshot folder to read them from"
        )
    path = Path(folder) / relative
    try:
        return pip_lines(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"{what}: requirements file {str(path)!r} cannot be read ({exc}); the build's "
            "snapshot must hold it as a UTF-8 text file in pip's requirements format"
        ) from exc


def pip_field(lines: list[str], folder: Path, working_dir_uri: str | None) -> dict[str, Any]:
    """The runtime env's ``pip`` field for requirement ``lines`` read from ``folder``, the
    snapshot whose content hash is ``working_dir_uri``."""
    anchored = [_anchor(line, Path(folder)) for line in lines]
    packages = [line for line, _ in anchored]
    named = [path for _, path in anchored if path is not None]
    if working_dir_uri and named:
        files = _files_digest(named, Path(folder))
        key = f"# files the paths name sha256:{files}" if files else None
        packages.insert(0, key or f"# paths in the snapshot {working_dir_uri}")
    return {"packages": packages, "pip_check": False, "pip_install_options": list(_PIP_OPTIONS)}


def install_failure(text: str) -> str | None:
    """pip's own error lines in Ray's report of a runtime env that could not be set up (None:
    not a failed install). Ray puts pip's output after its traceback."""
    if "pip" not in text or "runtime_env" not in text.replace(" ", "_").lower():
        return None
    errors = [line.strip() for line in text.splitlines() if line.strip().startswith("ERROR:")]
    if not errors:
        return None
    return (
        "pip could not install its requirements on the node (Ray's pip runtime env): "
        + " ".join(dict.fromkeys(errors))
        + "; fix the requirements (they must install on every node, from the index or the "
        "links they name) and deploy again"
    )
