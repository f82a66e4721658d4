"""Process groups: spawn a command in its own process group, read its figures, kill the group.

Every replica and run is started with ``process_group=0``, so it leads a new process group whose
id equals its pid. Children it forks stay in that group (unless they call ``setpgid`` or
``setsid`` themselves), which lets the runtime measure and kill the command and everything it
started as one unit, even after the leader died and its children were re-parented.

A process group, not a new session: with the kernel's autogroup scheduling (on by default on
many systems), every session is scheduled as one group with its own fair share, and waking a
process of another session costs a scheduling slice on a busy machine. A replica in a session of
its own answered one request at a time at a p50 of 2.5 ms against 0.45 ms in the server's session,
on this project's 2-core machine under load (``docs/replica.md``), and the gateway wakes its
replica twice per request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from modelyard.errors import InvalidInput

__all__ = [
    "GroupSample",
    "build_env",
    "check_command",
    "group_alive",
    "group_members",
    "sample_groups",
    "signal_group",
    "spawn",
    "terminate_group",
]


def build_env(given: Mapping[str, str], inherit: bool, added: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: (the runtime's own if ``inherit``) + ``given`` + ``added``.

    ``PYTHONUNBUFFERED=1`` is set unless ``given`` says otherwise, so Python children write
    their output to the log file as it happens instead of when a buffer fills.
    """
    env: dict[str, str] = dict(os.environ) if inherit else {}
    env.setdefault("PYTHONUNBUFFERED", "1")
    for key, value in given.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key or "=" in key:
            raise InvalidInput(
                f"environment entry {key!r}={value!r} is not valid; "
                "names and values must be strings and names may not be empty or contain '='"
            )
        env[key] = value
    env.update(added)
    return env


def check_command(argv: Sequence[str], cwd: str | Path | None, what: str) -> None:
    """Refuse an empty command or a missing working folder before anything is spawned."""
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidInput(
            f"{what} argv={argv!r} is not a command; give a non-empty list of strings "
            "such as ['python', 'serve.py']"
        )
    if cwd is not None and not Path(cwd).is_dir():
        raise InvalidInput(f"{what} cwd={str(cwd)!r} is not an existing folder")


def spawn(
    argv: Sequence[str],
    cwd: str | Path | None,
    env: Mapping[str, str],
    log_path: Path,
    header: str,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group with stdout and stderr appended to ``log_path``.

    The log file is opened in append mode here and handed to the child as a file descriptor, so
    output goes straight from the child to the file (never through Python) and survives
    restarts; ``header`` is written first so each start is visible in the file.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(header.encode("utf-8", "replace") + b"\n")
        log.flush()
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            close_fds=True,
        )


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to every process of group ``pgid``; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_members(pgid: int) -> list[psutil.Process]:
    """The live (non-zombie) processes of group ``pgid``."""
    return sample_groups([pgid]).get(pgid, GroupSample()).processes


def group_alive(pgid: int) -> bool:
    """True while any process of the group is alive; zombies count as gone.

    ``killpg(pgid, 0)`` is the cheap answer when the group is empty; when it is not, a zombie
    (for example one whose parent never reaps it) must not count as alive, so the members are
    read.
    """
    if not signal_group(pgid, 0):
        return False
    return bool(group_members(pgid))


@dataclass
class GroupSample:
    """The live processes of one group and their summed resident memory."""

    processes: list[psutil.Process] = field(default_factory=list)
    rss_bytes: int = 0


def sample_groups(pgids: Iterable[int]) -> dict[int, GroupSample]:
    """One pass over the process table: live members and summed RSS of each wanted group.

    RSS is summed over members, so pages shared between forked workers count more than once:
    an upper bound, which is the safe side for a limit.
    """
    wanted = set(pgids)
    samples: dict[int, GroupSample] = {}
    if not wanted:
        return samples
    for pid in psutil.pids():
        try:
            pgid = os.getpgid(pid)
        except (ProcessLookupError, PermissionError):
            continue
        if pgid not in wanted:
            continue
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            rss = proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        sample = samples.setdefault(pgid, GroupSample())
        sample.processes.append(proc)
        sample.rss_bytes += rss
    return samples


def terminate_group(
    popen: subprocess.Popen[bytes], grace_s: float, poll_s: float = 0.05
) -> int | None:
    """SIGTERM the whole group, SIGKILL it after ``grace_s``; reap the leader; return its code.

    Blocks until no live process of the group remains (SIGKILL cannot be ignored, so that is at
    most ``grace_s`` plus a moment).
    """
    pgid = popen.pid
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    killed = False
    while True:
        popen.poll()
        if not group_alive(pgid):
            break
        if not killed and time.monotonic() >= deadline:
            signal_group(pgid, signal.SIGKILL)
            killed = True
        time.sleep(poll_s)
    try:
        return popen.wait(timeout=max(grace_s, 1.0))
    except subprocess.TimeoutExpired:  # pragma: no cover - the group is gone, the leader too
        popen.kill()
        return popen.wait()
