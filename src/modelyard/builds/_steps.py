"""Running a build step as a child process: output to the build log, a deadline, no leftovers.

Each step runs in its own session so a timeout ends the whole process group (pip's build
back-ends, a user's smoke test that forks) and not just the direct child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

__all__ = ["StepResult", "child_env", "run_step"]


@dataclass(frozen=True, slots=True)
class StepResult:
    returncode: int | None  # None: killed at the deadline
    stdout: str


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without PYTHONPATH (a build sees only its own environment)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def run_step(
    cmd: Sequence[str],
    log: IO[str],
    *,
    timeout_s: float,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdin_text: str | None = None,
    capture_stdout: bool = False,
) -> StepResult:
    """Run ``cmd`` with stderr (and stdout unless captured) appended to ``log``."""
    log.write("[modelyard] $ " + " ".join(cmd) + "\n")
    log.flush()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=dict(env) if env is not None else child_env(),
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture_stdout else log,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(stdin_text, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return StepResult(None, "")
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return StepResult(proc.returncode, out or "")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
