"""Where replica and run logs live, and reading them back (tail and follow) safely.

Layout under the Modelyard home::

    logs/replicas/<deployment_id>/<replica_id>.log
    logs/runs/<run_id>.log

Identifiers come from API callers, so each is checked against a strict pattern and the resolved
path must stay inside the logs folder (which also refuses a symlink that points elsewhere).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from modelyard.errors import InvalidInput, NotFound

__all__ = [
    "check_name",
    "follow_lines",
    "logs_root",
    "read_log",
    "replica_log_path",
    "run_log_path",
    "tail_lines",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_BLOCK = 64 * 1024


def check_name(value: object, argument: str) -> str:
    """Return ``value`` if it is safe as one path component; else raise InvalidInput."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise InvalidInput(
            f"{argument}={value!r} is not a valid identifier; use 1-128 letters, digits, '_', "
            "'-' or '.', starting with a letter or digit, without '..' or '/' "
            "(for a deployment, the uuid part of its CRN)"
        )
    return value


def logs_root(home: Path) -> Path:
    return Path(home) / "logs"


def _inside(root: Path, path: Path, argument: str) -> Path:
    resolved_root = root.resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(resolved_root):
        raise InvalidInput(
            f"{argument} resolves to {str(resolved)!r}, outside the logs folder "
            f"{str(resolved_root)!r}; only logs under it can be read"
        )
    return path


def replica_log_path(home: Path, deployment_id: str, replica_id: str) -> Path:
    root = logs_root(home)
    path = (
        root
        / "replicas"
        / check_name(deployment_id, "deployment_id")
        / f"{check_name(replica_id, 'replica_id')}.log"
    )
    return _inside(root, path, f"replica log {deployment_id}/{replica_id}")


def run_log_path(home: Path, run_id: str) -> Path:
    root = logs_root(home)
    path = root / "runs" / f"{check_name(run_id, 'run_id')}.log"
    return _inside(root, path, f"run log {run_id}")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def tail_lines(path: Path, count: int, end: int | None = None) -> list[str]:
    """The last ``count`` lines of ``path`` before byte ``end`` (default: its end), no newlines.

    Reads backwards in blocks, so the cost depends on ``count``, not on the file's size.
    """
    if count <= 0:
        return []
    with open(path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END) if end is None else end
        data = b""
        # One extra newline is needed: the file's last byte is usually a newline itself.
        while position > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [_decode(line) for line in lines[-count:]]


def follow_lines(
    path: Path,
    start: int,
    poll_s: float = 0.2,
    stop: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """Lines appended to ``path`` from byte offset ``start`` on, as they are written.

    Runs until ``stop()`` is true (checked when no new data is there) or the caller closes the
    generator. A partial last line is held back until its newline arrives.
    """
    pending = b""
    with open(path, "rb") as handle:
        handle.seek(start)
        while True:
            chunk = handle.read(_BLOCK)
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield _decode(line)
                continue
            if stop is not None and stop():
                # Drain once more: the writer may have added its last lines between the empty
                # read above and the moment it stopped.
                *complete, pending = (pending + handle.read()).split(b"\n")
                for line in complete:
                    yield _decode(line)
                if pending:
                    yield _decode(pending)
                return
            time.sleep(poll_s)


def read_log(
    path: Path,
    tail: int | None = None,
    follow: bool = False,
    poll_s: float = 0.2,
    stop: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """Lines of a log: all of it, or the last ``tail``; with ``follow``, then new lines too."""
    if not path.is_file():
        raise NotFound(f"log {str(path)!r} does not exist; nothing has been started under that id")
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise InvalidInput(f"tail_lines={tail!r} must be a whole number >= 0, or None for all")
    size = path.stat().st_size
    # Only whole lines are read up front; following picks up after the last newline, so a line
    # being written at this moment is neither cut in two nor shown twice.
    end = _last_line_end(path, size) if follow else size
    if tail is not None:
        first = tail_lines(path, tail, end)
    else:
        with open(path, "rb") as handle:
            data = handle.read(end)
        first = [_decode(line) for line in data.split(b"\n")]
        if first and first[-1] == "":
            first.pop()
    return _chain(first, path, end, follow, poll_s, stop)


def _last_line_end(path: Path, size: int) -> int:
    """The offset just past the last newline before ``size`` (0 if there is none)."""
    with open(path, "rb") as handle:
        position = size
        while position > 0:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            found = handle.read(step).rfind(b"\n")
            if found >= 0:
                return position + found + 1
    return 0


def _chain(
    first: list[str],
    path: Path,
    size: int,
    follow: bool,
    poll_s: float,
    stop: Callable[[], bool] | None,
) -> Iterator[str]:
    yield from first
    if follow:
        yield from follow_lines(path, size, poll_s, stop)
