"""Python environments for builds: one virtual environment per distinct requirements text.

Without requirements a build runs on the base environment, the interpreter running Modelyard.
With requirements it gets a virtual environment under ``envs_root/<key>/``, where the key is the
sha256 of the normalised requirements text, the Python version and the base environment's prefix.
A second build with the same requirements reuses that environment instead of installing again.

The environment sees the base environment's packages (Modelyard itself, numpy, pandas...) through
a ``.pth`` file that adds the base's site-packages *after* its own, so requirements may pin other
versions while ``import modelyard`` keeps working in the replica. ``venv --system-site-packages``
is not enough when Modelyard itself runs from a virtual environment: that flag exposes the
interpreter's system folder, not the virtual environment the packages live in.

Completeness is a marker file written last: an install interrupted by a crash or a timeout leaves
no marker, so the next build redoes it instead of reusing a broken environment. An exclusive
``fcntl`` lock per key keeps two concurrent builds with the same requirements from installing into
the same folder at once; the second waits and then reuses.

Relative paths inside a requirements file are resolved from ``cwd`` (the snapshot), as pip does
from the current folder. The key is the requirements *text*: a line that names a local folder
keeps the environment built from that folder's first content.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import site
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

from modelyard.builds._steps import run_step
from modelyard.errors import InvalidInput, ModelyardError

__all__ = [
    "BASE_KEY",
    "DEFAULT_INSTALL_TIMEOUT_S",
    "Environment",
    "EnvironmentFailed",
    "ensure_environment",
    "environment_key",
    "normalise_requirements",
]

BASE_KEY = "base"
DEFAULT_INSTALL_TIMEOUT_S = 900.0
_MARKER = ".modelyard-complete"
_PTH = "_modelyard_base.pth"


class EnvironmentFailed(ModelyardError):
    """A build environment could not be created or its requirements could not be installed.

    The build log holds pip's output; a build reports this as a failed build, not a crash.
    """

    status = 422
    code = "build_failed"


@dataclass(frozen=True, slots=True)
class Environment:
    """The interpreter a build runs on. ``key`` is ``base`` or the environment's folder name."""

    python: Path
    key: str
    reused: bool
    path: Path | None = None


def normalise_requirements(text: str) -> str:
    """Requirements text reduced to what pip reads: no comments, blank lines or stray spaces.

    Lines continued with a trailing backslash are joined first, as pip does. Lines are then
    sorted because pip resolves the set as a whole, so reordering lines does not change the
    environment and should not force a new one.
    """
    joined = re.sub(r"\\\r?\n", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = re.split(r"(?:^|\s)#", raw, maxsplit=1)[0].strip()
        if line:
            lines.append(" ".join(line.split()))
    return "\n".join(sorted(lines))


def environment_key(requirements_text: str) -> str:
    """The folder name of the environment for ``requirements_text`` on this interpreter."""
    identity = [
        normalise_requirements(requirements_text),
        sys.version,
        os.path.realpath(sys.prefix),
    ]
    return hashlib.sha256(orjson.dumps(identity)).hexdigest()


def ensure_environment(
    requirements_file: str | os.PathLike[str] | None,
    envs_root: str | os.PathLike[str],
    log: IO[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: float = DEFAULT_INSTALL_TIMEOUT_S,
) -> Environment:
    """The environment for ``requirements_file``: reused if complete, else created now.

    Progress and pip's output go to ``log``, which must be a real file: child processes write
    to its descriptor. Raises InvalidInput for an unreadable requirements
    file and EnvironmentFailed when the environment cannot be created or installed.
    """
    if requirements_file is None:
        _note(log, f"no requirements: using the base environment {sys.executable}")
        return Environment(Path(sys.executable), BASE_KEY, reused=True)
    req_path = Path(requirements_file)
    try:
        text = req_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"requirements file {str(req_path)!r} cannot be read ({exc}); "
            "pass a UTF-8 text file in pip's requirements format",
            requirements=str(req_path),
        ) from exc
    if not normalise_requirements(text):
        _note(log, f"requirements file {req_path.name} lists nothing: using the base environment")
        return Environment(Path(sys.executable), BASE_KEY, reused=True)

    key = environment_key(text)
    root = Path(envs_root)
    root.mkdir(parents=True, exist_ok=True)
    env_dir = root / key
    python = env_dir / "bin" / "python"
    with _locked(root / f"{key}.lock", log):
        if (env_dir / _MARKER).is_file():
            _note(log, f"reusing environment {key} (same requirements)")
            return Environment(python, key, reused=True, path=env_dir)
        if env_dir.exists():
            _note(log, f"environment {key} is incomplete (an earlier install stopped): redoing it")
            shutil.rmtree(env_dir)
        started = time.monotonic()
        try:
            _create(env_dir, req_path, log, cwd, timeout_s)
        except OSError as exc:
            shutil.rmtree(env_dir, ignore_errors=True)
            _note(log, f"failed: {exc}")
            raise EnvironmentFailed(
                f"build environment {key} could not be created ({exc}); check free disk space "
                f"and permissions under {str(root)!r}",
                key=key,
            ) from exc
        except BaseException:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise
        (env_dir / _MARKER).write_bytes(
            orjson.dumps({"requirements": normalise_requirements(text), "python": sys.version})
        )
        _note(log, f"environment {key} ready in {time.monotonic() - started:.1f}s")
    return Environment(python, key, reused=False, path=env_dir)


def _create(
    env_dir: Path,
    requirements: Path,
    log: IO[str],
    cwd: str | os.PathLike[str] | None,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    # pip is borrowed from the base environment when it has one (through the .pth file below),
    # which saves the seconds ensurepip spends installing a private copy.
    has_pip = importlib.util.find_spec("pip") is not None
    venv_cmd = [sys.executable, "-m", "venv"]
    venv_cmd += ["--without-pip"] if has_pip else []
    _run([*venv_cmd, str(env_dir)], log, None, deadline, "creating the virtual environment")
    python = env_dir / "bin" / "python"
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            log,
            None,
            deadline,
            "locating the environment's site-packages",
            capture=True,
        ).strip()
    )
    purelib.mkdir(parents=True, exist_ok=True)
    base_dirs = [d for d in site.getsitepackages() if os.path.isdir(d)]
    lines = [f"import site; site.addsitedir({d!r})" for d in base_dirs]
    (purelib / _PTH).write_text("\n".join(lines) + "\n", encoding="utf-8")
    pip_cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    pip_cmd += ["-r", str(requirements.resolve())]
    _run(pip_cmd, log, cwd, deadline, f"installing {requirements.name}")


def _run(
    cmd: Sequence[str],
    log: IO[str],
    cwd: str | os.PathLike[str] | None,
    deadline: float,
    what: str,
    *,
    capture: bool = False,
) -> str:
    timeout = max(deadline - time.monotonic(), 1.0)
    result = run_step(cmd, log, timeout_s=timeout, cwd=cwd, capture_stdout=capture)
    if result.returncode is None:
        _note(log, f"timed out after {timeout:.0f}s while {what}")
        raise EnvironmentFailed(
            f"build environment timed out after {timeout:.0f}s while {what}; "
            "raise the install timeout or trim the requirements",
            step=what,
        )
    if result.returncode != 0:
        _note(log, f"failed with exit code {result.returncode} while {what}")
        raise EnvironmentFailed(
            f"build environment failed while {what} (exit code {result.returncode}); "
            "the build log has pip's output: fix the requirements and deploy again",
            step=what,
            exit_code=result.returncode,
        )
    return result.stdout


@contextmanager
def _locked(path: Path, log: IO[str]) -> Iterator[None]:
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _note(log, "another build is preparing the same environment: waiting for it")
            log.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _note(log: IO[str], message: str) -> None:
    log.write(f"[modelyard] {message}\n")
