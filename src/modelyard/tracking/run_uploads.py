"""Sending an experiment run's tracked files to the server when the script ends.

The runner keeps what a run tracked by reading it from the run's working folder once the process
ended (``jobs/run_files.py``). That works when the script runs on the server's machine; on a
runtime that runs it elsewhere (Ray: a copy of the folder on a cluster node) the runner's folder
never sees what the script wrote. So a run that talks to a server (the remote backend) also sends
the files itself: the first ``track_file`` of a process registers an ``atexit`` hook
(``upload_tracked``) that, when the script ends, reads every file this process tracked, as it is
then, and sends its bytes with ``PUT /api/v1/runs/{uuid}/files/{path}`` and the run's own key.
The server keeps them (state ``kept``) and the runner's collection skips kept files, so a file is
stored once; a process killed before its ``atexit`` hooks run (SIGKILL, ``os._exit``, a timeout)
sends nothing, and on the local runtime the runner still keeps its files from the folder.

The same checks as the runner's, before anything is sent: the file still lies inside the run's
folder once symbolic links are resolved, is a regular file of at most ``MAX_RUN_FILE_BYTES``,
and the files sent stay within ``MAX_RUN_FILES`` and ``MAX_RUN_FILES_TOTAL_BYTES`` (the server
checks them again). A file that cannot be sent is a line on stderr (the run's log) naming the file
and why; nothing is raised from the hook. Sending the same bytes again changes nothing.
"""

from __future__ import annotations

import atexit
import os
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from modelyard.client import Client
from modelyard.errors import InvalidInput, ModelyardError, PayloadTooLarge

__all__ = [
    "MAX_RUN_FILES",
    "MAX_RUN_FILES_TOTAL_BYTES",
    "MAX_RUN_FILE_BYTES",
    "Sent",
    "forget",
    "remember",
    "tracked",
    "upload_tracked",
]

#: The registry's limits (``modelyard.registry``; tracking sits below it and keeps a copy).
MAX_RUN_FILE_BYTES = 64 * 1024 * 1024
MAX_RUN_FILES = 100
MAX_RUN_FILES_TOTAL_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Tracked:
    client: Client
    run_dir: str


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of one tracked file at the end: ``error`` None once the server kept it."""

    run_id: str
    path: str
    size: int | None
    error: str | None


_lock = threading.Lock()
_tracked: dict[tuple[str, str], _Tracked] = {}
_registered = False


def remember(client: Client, run_id: str, path: str, run_dir: str) -> None:
    """Note that this process tracked ``path`` (relative to ``run_dir``) of run ``run_id``,
    to be sent to ``client``'s server when the process ends; registers the hook once."""
    global _registered
    with _lock:
        _tracked.setdefault((run_id, path), _Tracked(client, os.path.realpath(run_dir)))
        if not _registered:
            _registered = True
            atexit.register(upload_tracked)


def forget() -> None:
    """Send nothing for what was tracked so far (tests: a process that tracked for a run that
    is gone)."""
    with _lock:
        _tracked.clear()


def tracked() -> list[tuple[str, str]]:
    """(run id, path) of the files this process will send at its end, in tracking order."""
    with _lock:
        return list(_tracked)


def _data(run_dir: str, path: str) -> bytes:
    """The bytes of ``path`` inside ``run_dir`` now; InvalidInput or PayloadTooLarge saying
    why not (the runner's checks, ``jobs/run_files.py``)."""
    root = Path(run_dir)
    try:
        full = (root / path).resolve(strict=True)
    except (OSError, RuntimeError):
        raise InvalidInput("it does not exist when the script ended") from None
    if not full.is_relative_to(root):
        raise InvalidInput(f"it resolves to {full}, outside the run's folder {root}")
    # (non-blocking: a pipe put in its place must not hold the script's exit)
    with open(os.open(full, os.O_RDONLY | os.O_NONBLOCK), "rb") as source:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            raise InvalidInput("it is not a regular file")
        data = source.read(MAX_RUN_FILE_BYTES + 1)
    if len(data) > MAX_RUN_FILE_BYTES:
        raise PayloadTooLarge(
            f"it is more than {MAX_RUN_FILE_BYTES} bytes; accepted: at most "
            f"{MAX_RUN_FILE_BYTES} bytes (64 MiB) per run file",
            limit=MAX_RUN_FILE_BYTES,
        )
    return data


def _send(item: _Tracked, run_id: str, path: str, data: bytes) -> None:
    item.client.call(
        "PUT",
        f"/api/v1/runs/{quote(run_id, safe='')}/files/{quote(path, safe='/')}",
        data=data,
        what=f"sending file {path!r} of run {run_id!r}",
    )


def upload_tracked(err: TextIO | None = None) -> list[Sent]:
    """Send every file this process tracked (see the module docstring); each failure is a line
    on ``err`` (stderr). Never raises. Returns what became of each file."""
    with _lock:
        items = list(_tracked.items())
        _tracked.clear()
    outcomes: list[Sent] = []
    count = total = 0
    for (run_id, path), item in items:
        size: int | None = None
        try:
            data = _data(item.run_dir, path)
            size = len(data)
            if count >= MAX_RUN_FILES:
                raise InvalidInput(f"accepted: at most {MAX_RUN_FILES} files per run")
            if total + size > MAX_RUN_FILES_TOTAL_BYTES:
                raise PayloadTooLarge(
                    f"it would bring the run's files to {total + size} bytes; accepted: at most "
                    f"{MAX_RUN_FILES_TOTAL_BYTES} bytes (256 MiB) per run",
                    limit=MAX_RUN_FILES_TOTAL_BYTES,
                )
            _send(item, run_id, path, data)
            count += 1
            total += size
            outcomes.append(Sent(run_id, path, size, None))
        except Exception as exc:  # never out of an atexit hook: say it, go on
            reason = exc.message if isinstance(exc, ModelyardError) else f"{exc}"
            outcomes.append(Sent(run_id, path, size, reason or exc.__class__.__name__))
            _say(err, f"file {path!r} of run {run_id} was not sent to the server: {reason}")
    return outcomes


def _say(err: TextIO | None, message: str) -> None:
    try:
        out = err if err is not None else sys.stderr
        out.write(f"[modelyard] {message}\n")
        out.flush()
    except Exception:  # pragma: no cover - stderr closed at exit: nothing left to tell
        pass


def _forget_after_fork() -> None:
    # A forked child sends only what it tracks itself (its inherited hook stays registered).
    global _lock
    _lock = threading.Lock()
    _tracked.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
