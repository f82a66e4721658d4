"""Where replica and run logs live, and reading them back (tail and follow) safely.

Layout under the Modelyard home::

    logs/replicas/<deployment_id>/<replica_id>.log
    logs/runs/<run_id>.log

Identifiers come from API callers, so each is checked against a strict pattern and the resolved
path must stay inside the logs folder (which also refuses a symlink that points elsewhere).

Rotation. A replica or run writes its output straight into its log through a file descriptor it
inherited (never through Python, so output survives a restart of the runtime), so a log cannot be
renamed away from under it. It is rotated by copy and truncate instead, by the runtime's
supervisor (``rotate``, about once a second): when ``<name>.log`` reaches
``MODELYARD_LOG_MAX_BYTES`` it is copied to ``<name>.log.<n>`` (``n`` one more than the newest
copy's: copies are never renamed, higher is newer) and truncated, and copies beyond
``MODELYARD_LOG_BACKUPS`` are deleted, oldest first; the writer's append-mode descriptor then
carries on at the start of the emptied file. Output written between the copy's last read and the
truncation (microseconds; a few milliseconds if a busy process delays the thread) can be lost, as
with logrotate's ``copytruncate``.

Reading sees the kept copies too: a whole read or a tail starts in the oldest copy that is needed,
and a follower that is left behind by a rotation finishes the lines of its file from the copy
numbered one more than the newest it knew (and reads any newer copies, when several rotations
came between two polls), then goes on at the start of the live file.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from modelyard import settings
from modelyard.errors import InvalidInput, NotFound

__all__ = [
    "Rotation",
    "backup_path",
    "check_name",
    "follow_lines",
    "log_files",
    "logs_root",
    "read_log",
    "replica_log_path",
    "rotate",
    "rotate_all",
    "run_log_path",
    "tail_lines",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_BLOCK = 64 * 1024
# How long a follower waits for the copy of a file it finds emptied before it treats the file as
# emptied by hand (seconds); a rotation puts its copy in place microseconds after emptying.
_RESCAN_S = 1.0


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


# -- rotation ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rotation:
    """When a log is rotated (``max_bytes``; 0: never) and how many copies are kept (>= 1)."""

    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5

    def __post_init__(self) -> None:
        size, kept = self.max_bytes, self.backups
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(
                f"log max_bytes={size!r} is not a size; use a whole number of bytes >= 0 "
                "(0: never rotate), e.g. 10MB"
            )
        if isinstance(kept, bool) or not isinstance(kept, int) or not 1 <= kept <= 1000:
            raise InvalidInput(f"log backups={kept!r} is not a count of kept copies; use 1 to 1000")

    @classmethod
    def from_settings(cls) -> Rotation:
        """``MODELYARD_LOG_MAX_BYTES`` and ``MODELYARD_LOG_BACKUPS`` (see docs/configuration.md)."""
        return cls(settings.get("log_max_bytes"), settings.get("log_backups"))


def backup_path(path: Path, number: int) -> Path:
    """Kept copy number ``number`` of ``path``: ``<name>.log.<number>``; higher is newer."""
    return path.with_name(f"{path.name}.{number}")


def _numbers(path: Path) -> list[int]:
    """The numbers of the kept copies of ``path`` that exist, oldest (lowest) first."""
    prefix = path.name + "."
    found = []
    try:
        entries = os.scandir(path.parent)
    except FileNotFoundError:
        return []
    with entries:
        for entry in entries:
            rest = entry.name[len(prefix) :]
            if entry.name.startswith(prefix) and rest.isdigit() and rest[0] != "0":
                found.append(int(rest))
    return sorted(found)


def _newest(path: Path) -> int:
    """The number of the newest kept copy, 0 if there is none."""
    numbers = _numbers(path)
    return numbers[-1] if numbers else 0


def log_files(path: Path) -> list[Path]:
    """Every file of the log, oldest first: the kept copies, then ``path`` itself."""
    return [*(backup_path(path, n) for n in _numbers(path)), path]


def rotate(path: Path, rotation: Rotation) -> bool:
    """Copy and truncate ``path`` if it has reached ``rotation.max_bytes``; True if it did.

    The copy gets the next number (copies are never renamed, so a follower can tell which copy
    holds the rest of its file by its number alone), and copies beyond ``rotation.backups`` are
    deleted, oldest first. Only one process may rotate a given log (the runtime that owns it).
    """
    if rotation.max_bytes <= 0:
        return False
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return False
    if stat.st_size < rotation.max_bytes:
        return False
    numbers = _numbers(path)
    scratch = path.with_name(f".{path.name}.rotating")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.st_mode & 0o777)
    with open(fd, "wb") as copy, open(path, "r+b") as live:
        while chunk := live.read(_BLOCK):
            copy.write(chunk)
        # Truncate right after the last read: what the writer adds between the two is lost.
        live.truncate(0)
    # The copy appears only now, complete: a follower that sees it can read its file's end there.
    os.replace(scratch, backup_path(path, (numbers[-1] if numbers else 0) + 1))
    for old in numbers[: max(0, len(numbers) + 1 - rotation.backups)]:
        backup_path(path, old).unlink(missing_ok=True)
    return True


def rotate_all(paths: Iterable[Path], rotation: Rotation) -> list[Path]:
    """``rotate`` each log; a log that cannot be rotated is logged and left growing, never fatal
    to the caller (the supervisor)."""
    done = []
    for path in paths:
        try:
            if rotate(path, rotation):
                done.append(path)
        except OSError as exc:
            log.warning("could not rotate log %s: %s: %s", path, exc.__class__.__name__, exc)
    return done


def _catch_up(path: Path, known: int, newest: int, position: int) -> Iterator[bytes]:
    """After rotations: the rest of the follower's file from ``position`` (now copy
    ``known + 1``), then every newer copy up to ``newest`` whole. Copies already deleted (a
    follower more than the kept count behind) are skipped: their lines are gone."""
    for number in range(known + 1, newest + 1):
        try:
            handle = open(backup_path(path, number), "rb")  # noqa: SIM115 - closed just below
        except FileNotFoundError:
            continue
        with handle:
            if number == known + 1:
                handle.seek(position)
            while chunk := handle.read(_BLOCK):
                yield chunk


# -- reading -------------------------------------------------------------------------------------


def _tail_bytes(segments: list[tuple[Path, int | None]], count: int) -> bytes:
    """The bytes holding the last ``count`` lines of the files ``segments`` (newest first, each
    read up to its end offset, None for all), read backwards in blocks."""
    data = b""
    for path, end in segments:
        try:
            data = _read_back(path, end, data, count)
        except FileNotFoundError:  # rotated away meanwhile
            continue
        if data.count(b"\n") > count:
            break
    return data


def _read_back(path: Path, end: int | None, data: bytes, count: int) -> bytes:
    """``data`` with blocks of ``path`` before ``end`` put in front until it has enough lines."""
    with open(path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END) if end is None else end
        # One extra newline is needed: the file's last byte is usually a newline itself.
        while position > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    return data


def _split(data: bytes) -> list[str]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [_decode(line) for line in lines]


def tail_lines(path: Path, count: int, end: int | None = None) -> list[str]:
    """The last ``count`` lines of the log ``path`` before byte ``end`` of it (default: its end),
    no newlines; when ``path`` holds fewer, the kept copies (``.1``, ``.2`` ...) give the rest.

    Reads backwards in blocks, so the cost depends on ``count``, not on the files' sizes.
    """
    if count <= 0:
        return []
    segments: list[tuple[Path, int | None]] = [(path, end)]
    segments += [(backup_path(path, n), None) for n in reversed(_numbers(path))]
    return _split(_tail_bytes(segments, count))[-count:]


def follow_lines(
    path: Path,
    start: int,
    poll_s: float = 0.2,
    stop: Callable[[], bool] | None = None,
    since: int | None = None,
) -> Iterator[str]:
    """Lines appended to ``path`` from byte offset ``start`` on, as they are written, across
    rotations (see the module docstring).

    ``since`` is the number of the newest kept copy when ``start`` was taken (``read_log``
    passes the one it read under); by default, the one now. Runs until ``stop()`` is true
    (checked when no new data is there) or the caller closes the generator. A partial last line
    is held back until its newline arrives (a line cut in two by a rotation is joined again).
    """
    known = _newest(path) if since is None else since
    pending = b""
    position = start
    truncated_at: float | None = None
    with open(path, "rb") as handle:
        handle.seek(start)
        while True:
            # The next copy appearing means a rotation: one stat per poll.
            if backup_path(path, known + 1).is_file():
                # Finish this file from its copy (and any newer ones), then the live file.
                newest = _newest(path)
                for chunk in _catch_up(path, known, newest, position):
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for line in complete:
                        yield _decode(line)
                known = newest
                position = handle.seek(0)
                truncated_at = None
                continue
            chunk = handle.read(_BLOCK)
            if chunk:
                position += len(chunk)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield _decode(line)
                continue
            if os.fstat(handle.fileno()).st_size < position:
                # Truncated without the next copy: a rotation between its truncate and its
                # rename (the copy appears at the next poll), a follower so far behind that its
                # copy was deleted already, or a file emptied by hand.
                if truncated_at is None:
                    truncated_at = time.monotonic()
                elif time.monotonic() - truncated_at > _RESCAN_S:
                    known = max(known, _newest(path))  # what is left is in the live file
                    position = handle.seek(0)
                    truncated_at = None
                    continue
            else:
                truncated_at = None
            if stop is not None and stop():
                if backup_path(path, known + 1).is_file():
                    continue  # rotated at the very end: catch up before the last drain
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
    """Lines of a log with its kept copies: all of it, or the last ``tail``; with ``follow``,
    then new lines too, across rotations."""
    if not path.is_file():
        raise NotFound(f"log {str(path)!r} does not exist; nothing has been started under that id")
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise InvalidInput(f"tail_lines={tail!r} must be a whole number >= 0, or None for all")
    for _ in range(5):  # read again if a rotation happened while reading (at most a few times)
        known = _newest(path)
        size = path.stat().st_size
        # Only whole lines are read up front; following picks up after the last newline, so a
        # line being written at this moment is neither cut in two nor shown twice.
        end = _last_line_end(path, size) if follow else size
        if tail is not None:
            first = tail_lines(path, tail, end)
        else:
            first = _split(b"".join(_read_whole(path, end)))
        if _newest(path) == known:
            break
    return _chain(first, path, end, follow, poll_s, stop, known)


def _read_whole(path: Path, end: int) -> Iterator[bytes]:
    for number in _numbers(path):
        try:
            yield backup_path(path, number).read_bytes()
        except FileNotFoundError:  # rotated away meanwhile; read_log reads again
            continue
    with open(path, "rb") as handle:
        yield handle.read(end)


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
    known: int,
) -> Iterator[str]:
    yield from first
    if follow:
        yield from follow_lines(path, size, poll_s, stop, known)
