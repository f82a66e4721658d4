"""A build: snapshot the project, prepare its environment, smoke-test the function, keep the log.

Two names come out of a build, on purpose: the snapshot ``digest`` names content (two builds of
unchanged code share it and its folder), the ``build_crn`` names one build event (who built what,
when, with which log and verdict). The registry keys builds by CRN and may look up by digest.

Failure has two shapes. Invalid inputs (a ``file`` outside the project, a bad function name, a
symlink leaving the project, a file over the size limit) raise ``InvalidInput`` or
``PayloadTooLarge`` before anything runs. A build that runs and fails (pip cannot install, the
import raises, the function raises or returns non-JSON, the smoke test times out) returns
``ok=False`` with the log's tail and raises nothing, so a caller can report it and leave the running
deployment untouched.

Layout under ``$MODELYARD_HOME/builds/``: ``snapshots/<digest>/``, ``envs/<key>/``,
``logs/<build uuid>.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from modelyard import settings
from modelyard.builds import smoke
from modelyard.builds._steps import child_env, run_step
from modelyard.builds.environments import (
    DEFAULT_INSTALL_TIMEOUT_S,
    EnvironmentFailed,
    ensure_environment,
)
from modelyard.builds.snapshot import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_TOTAL_BYTES,
    Snapshot,
    snapshot_project,
)
from modelyard.errors import InvalidInput, NotFound
from modelyard.ids import new_crn

__all__ = [
    "DEFAULT_SMOKE_TIMEOUT_S",
    "LOG_TAIL_LINES",
    "BuildResult",
    "build",
    "build_log_path",
    "builds_root",
    "read_build_log",
    "validate_function",
    "validate_project_path",
]

DEFAULT_SMOKE_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 40
_TAIL_LINE_CHARS = 500
_BUILD_PREFIX = "crn:modelyard:build/"
# Settings that would send the smoke test's tracked metrics to a real store or server: the smoke
# test records into a scratch home instead, deleted afterwards.
_SMOKE_DROPPED_ENV = (
    "MODELYARD_URL",
    "MODELYARD_API_KEY",
    "MODELYARD_DATABASE_URL",
    "MODELYARD_DEPLOYMENT_CRN",
    "MODELYARD_MODEL_CRN",
)
_SMOKE_MESSAGES = {
    smoke.EXIT_USAGE: "the smoke test could not read its arguments or the example",
    smoke.EXIT_IMPORT_FAILED: "importing {file} failed",
    smoke.EXIT_NOT_CALLABLE: "{file} has no callable {function}",
    smoke.EXIT_CALL_FAILED: "{function}(example) raised an exception",
    smoke.EXIT_BAD_OUTPUT: "{function}(example) returned a value that is not JSON",
}


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What a build produced. ``error`` is None exactly when ``ok``."""

    build_crn: str
    digest: str
    snapshot_path: Path
    file: str
    function: str
    python: Path
    environment_key: str
    environment_reused: bool
    log_path: Path
    ok: bool
    error: str | None
    log_tail: str
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields for the registry and the API."""
        return {
            "buildCrn": self.build_crn,
            "digest": self.digest,
            "snapshotPath": str(self.snapshot_path),
            "file": self.file,
            "function": self.function,
            "python": str(self.python),
            "environmentKey": self.environment_key,
            "environmentReused": self.environment_reused,
            "logPath": str(self.log_path),
            "ok": self.ok,
            "error": self.error,
            "logTail": self.log_tail,
            "durationS": round(self.duration_s, 3),
        }


def builds_root(home: str | os.PathLike[str] | None = None) -> Path:
    return Path(home if home is not None else settings.home()) / "builds"


def validate_project_path(value: object, argument: str, *, suffix: str | None = None) -> str:
    """``value`` as a normalised relative POSIX path that cannot leave the project folder.

    Refuses absolute paths, ``..`` anywhere, backslashes, NUL bytes and empty paths, so a name
    sent to the API can never address a file outside the snapshot.
    """
    accepted = "a relative path inside the project such as 'predict.py' or 'src/model.py'"
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{argument}={value!r} is empty or not a string; expected {accepted}")
    if "\x00" in value or "\\" in value:
        raise InvalidInput(
            f"{argument}={value!r} contains a NUL byte or a backslash; expected {accepted}"
        )
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidInput(
            f"{argument}={value!r} points outside the project (absolute or with '..'); "
            f"expected {accepted}"
        )
    if suffix is not None and path.suffix != suffix:
        raise InvalidInput(f"{argument}={value!r} is not a {suffix} file; expected {accepted}")
    normalised = str(path)
    if normalised in ("", "."):
        raise InvalidInput(f"{argument}={value!r} names no file; expected {accepted}")
    return normalised


def validate_function(value: object) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise InvalidInput(
            f"function={value!r} is not a Python identifier; expected the name of a function "
            "defined at the top level of the file, such as 'predict'"
        )
    return value


def build_log_path(build: str, home: str | os.PathLike[str] | None = None) -> Path:
    """Where the log of ``build`` (its CRN or bare uuid) lives; refuses anything else.

    The log route of the API passes user input here, so only a canonical uuid reaches the path.
    """
    raw = build.removeprefix(_BUILD_PREFIX) if isinstance(build, str) else None
    try:
        parsed = uuid.UUID(raw) if raw is not None else None
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != raw:
        raise InvalidInput(
            f"build={build!r} is not a build identifier; expected "
            f"'{_BUILD_PREFIX}<uuid>' or a bare lowercase uuid"
        )
    return builds_root(home) / "logs" / f"{parsed}.log"


def read_build_log(
    build: str, *, home: str | os.PathLike[str] | None = None, tail_lines: int | None = None
) -> str:
    """The text of a build's log, or its last ``tail_lines`` lines."""
    path = build_log_path(build, home)
    if not path.is_file():
        raise NotFound(f"build {build!r} has no log; check the build identifier", build=build)
    return _tail(path, tail_lines) if tail_lines is not None else path.read_text(errors="replace")


def build(  # noqa: PLR0913 - the public call: what to build, then keyword-only options and limits
    project_dir: str | os.PathLike[str],
    file: str | os.PathLike[str],
    function: str,
    *,
    example: dict[str, Any] | None = None,
    requirements: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    smoke_timeout_s: float = DEFAULT_SMOKE_TIMEOUT_S,
    install_timeout_s: float = DEFAULT_INSTALL_TIMEOUT_S,
) -> BuildResult:
    """Build ``function`` of ``file`` from ``project_dir``; see the module docstring.

    ``file`` and ``requirements`` are paths relative to the project; ``example`` is the JSON
    object the smoke test calls the function with (without it the function is imported and
    checked, not called).
    """
    file_rel = validate_project_path(file, "file", suffix=".py")
    function = validate_function(function)
    req_rel = None if requirements is None else validate_project_path(requirements, "requirements")
    example_json = _example_json(example)
    root = builds_root(home)
    build_crn = new_crn("build")
    log_path = build_log_path(build_crn, home)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    with open(log_path, "a", encoding="utf-8") as log:
        _note(log, f"build {build_crn} started {datetime.now(UTC).isoformat()}")
        _note(log, f"project {os.path.abspath(project_dir)}, function {file_rel}:{function}")
        snap, req_path = _snapshot(
            log, project_dir, root, file_rel, req_rel, max_file_bytes, max_total_bytes
        )

        def result(python: Path, key: str, reused: bool, error: str | None) -> BuildResult:
            if error is None:
                _note(log, f"build ok in {time.monotonic() - started:.1f}s")
            else:
                _note(log, f"build failed: {error}")
            log.flush()
            return BuildResult(
                build_crn=build_crn,
                digest=snap.digest,
                snapshot_path=snap.path,
                file=file_rel,
                function=function,
                python=python,
                environment_key=key,
                environment_reused=reused,
                log_path=log_path,
                ok=error is None,
                error=error,
                log_tail=_tail(log_path, LOG_TAIL_LINES),
                duration_s=time.monotonic() - started,
            )

        try:
            env = ensure_environment(
                req_path, root / "envs", log, cwd=snap.path, timeout_s=install_timeout_s
            )
        except EnvironmentFailed as exc:
            return result(Path(sys.executable), "", False, exc.message)
        except InvalidInput as exc:
            _note(log, f"build refused: {exc}")
            raise
        error = _smoke_test(
            env.python, snap.path, file_rel, function, example_json, build_crn, root, log,
            smoke_timeout_s,
        )  # fmt: skip
        return result(env.python, env.key, env.reused, error)


def _snapshot(
    log: IO[str],
    project_dir: str | os.PathLike[str],
    root: Path,
    file_rel: str,
    req_rel: str | None,
    max_file_bytes: int,
    max_total_bytes: int,
) -> tuple[Snapshot, Path | None]:
    """The build's snapshot and its requirements file in it, if any; anything refused is noted
    in the build log, then raised."""
    try:
        snap = snapshot_project(
            project_dir,
            root / "snapshots",
            max_file_bytes=max_file_bytes,
            max_total_bytes=max_total_bytes,
        )
        _note(
            log,
            f"snapshot {snap.digest} ({len(snap.files)} files, {snap.total_bytes} bytes, "
            f"{'reused' if snap.reused else 'new'})",
        )
        _require_in_snapshot(snap.path, file_rel, "file")
        req_path = None
        if req_rel is not None:
            req_path = _require_in_snapshot(snap.path, req_rel, "requirements")
    except BaseException as exc:
        _note(log, f"build refused: {exc}")
        raise
    return snap, req_path


def _smoke_test(  # noqa: PLR0913 - one smoke run's inputs, each a different thing build() holds
    python: Path,
    snapshot: Path,
    file: str,
    function: str,
    example_json: str | None,
    build_crn: str,
    root: Path,
    log: IO[str],
    timeout_s: float,
) -> str | None:
    """Run ``smoke.py`` with the build's interpreter; None when it passed, else why not."""
    scratch = root / "smoke" / build_crn.removeprefix(_BUILD_PREFIX)
    scratch.mkdir(parents=True, exist_ok=True)
    env = child_env({"MODELYARD_HOME": str(scratch), "MODELYARD_BUILD_CRN": build_crn})
    for name in _SMOKE_DROPPED_ENV:
        env.pop(name, None)
    cmd = [str(python), "-I", "-B", "-u", str(Path(smoke.__file__)), str(snapshot), file, function]
    if example_json is not None:
        cmd.append("--example-stdin")
    try:
        outcome = run_step(
            cmd, log, timeout_s=timeout_s, cwd=snapshot, env=env, stdin_text=example_json
        )
    except OSError as exc:
        _note(log, f"could not start the smoke test: {exc}")
        return f"the smoke test could not start with {python} ({exc.strerror or exc})"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if outcome.returncode is None:
        return (
            f"the smoke test of {file}:{function} did not finish within {timeout_s:g}s; "
            "make the function (and the import of its file) return faster"
        )
    if outcome.returncode == smoke.EXIT_OK:
        return None
    template = _SMOKE_MESSAGES.get(
        outcome.returncode, "the smoke test exited with code " + str(outcome.returncode)
    )
    return template.format(file=file, function=function) + "; see the log tail"


def _example_json(example: object) -> str | None:
    if example is None:
        return None
    if not isinstance(example, dict):
        raise InvalidInput(
            f"example is a {type(example).__name__}, not a JSON object; "
            'pass a dict such as {"feature": 1.0}'
        )
    try:
        return json.dumps(example, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"example {example!r:.200} is not JSON ({exc}); use strings, numbers, booleans, "
            "None, lists and dicts with string keys"
        ) from exc


def _require_in_snapshot(snapshot: Path, rel: str, argument: str) -> Path:
    full = snapshot / rel
    resolved = full.resolve()
    if snapshot.resolve() not in resolved.parents or not resolved.is_file():
        raise InvalidInput(
            f"{argument}={rel!r} is not a file in the project snapshot: it is missing, a folder, "
            "or excluded by .gitignore/.modelyardignore; name a file inside the project",
            **{argument: rel},
        )
    return full


def _tail(path: Path, lines: int) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        last = deque(handle, maxlen=max(lines, 0))
    return "".join(
        line if len(line) <= _TAIL_LINE_CHARS else line[:_TAIL_LINE_CHARS] + "...\n"
        for line in last
    )


def _note(log: IO[str], message: str) -> None:
    log.write(f"[modelyard] {message}\n")
    log.flush()
