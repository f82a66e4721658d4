"""``track_file``: keep an output file of an experiment run with the run.

Inside an experiment run (``MODELYARD_EXPERIMENT=1``, ``MODELYARD_RUN_ID`` and
``MODELYARD_RUN_DIR`` set by the runner) the call checks the file at once and records its path,
relative to the run's working folder, through the backend: ``POST /api/v1/runs/{uuid}/files``
when the run talks to a server, a line in ``<home>/runs/<uuid>/files.jsonl`` when it writes to the
store itself. The runner reads the file when the run ends (so a file tracked early and written
later is kept as it ended up), stores it with the run and says so in the run's log.

Checked here, each a clear error at the call: the file exists, is a regular file (a folder, a
pipe or a device is refused), lies inside the run's folder once symbolic links are resolved (a
script cannot make the runner read ``/etc/passwd`` or another run's files) and is at most
``MAX_RUN_FILE_BYTES``. Anywhere else (a notebook, a model, a job that is not an experiment) the
call records nothing and warns once, as the reference's ``track_file`` does nothing there.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.tracking import backends
from modelyard.tracking._env import EXPERIMENT_ENV, RUN_DIR_ENV
from modelyard.tracking.track import NotRecordedWarning

__all__ = ["MAX_RUN_FILE_BYTES", "run_file_path", "track_file"]

#: The largest file a run may keep (the registry's limit, ``docs/experiments.md``).
MAX_RUN_FILE_BYTES = 64 * 1024 * 1024

_warned = False


def _not_recorded(path: Path) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        NotRecordedWarning(
            f"file {str(path)!r} was not kept: track_file keeps files only inside an "
            f"experiment run ('modelyard experiments run', which sets {EXPERIMENT_ENV}=1 and "
            f"{RUN_DIR_ENV}). This warning is shown once."
        ),
        stacklevel=3,
    )


def _as_path(path: object) -> Path:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InvalidInput(f"track_file needs a file path (str or os.PathLike), got {path!r:.80}")
    return Path(os.fspath(path))


def run_file_path(path: object, run_dir: str | os.PathLike[str]) -> str:
    """``path`` (relative paths against the current folder) as a POSIX path relative to
    ``run_dir``, after checking it names a regular file of at most ``MAX_RUN_FILE_BYTES``
    inside ``run_dir`` once symbolic links are resolved; InvalidInput or PayloadTooLarge
    naming the file otherwise."""
    given = _as_path(path)
    root = Path(os.path.realpath(run_dir))
    try:
        real = (Path.cwd() / given).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise InvalidInput(
            f"track_file: no such file {str(given)!r} (looked for {Path.cwd() / given}); "
            f"give the path of a file the run wrote inside its folder {root}"
        ) from exc
    except (OSError, RuntimeError) as exc:  # a symlink loop, a permission error
        raise InvalidInput(f"track_file: cannot resolve {str(given)!r} ({exc})") from exc
    if not real.is_relative_to(root):
        raise InvalidInput(
            f"track_file: {str(given)!r} resolves to {real}, outside the run's folder {root}; "
            "only files inside the run's folder (the current folder when the run started) "
            "can be kept"
        )
    info = real.stat()
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(
            f"track_file: {str(given)!r} is not a regular file ({_kind(info.st_mode)}); "
            "give the path of a file, a folder can be packed into one with shutil.make_archive"
        )
    if info.st_size > MAX_RUN_FILE_BYTES:
        raise PayloadTooLarge(
            f"track_file: {str(given)!r} is {info.st_size} bytes, over the limit of "
            f"{MAX_RUN_FILE_BYTES} bytes (64 MiB) a run may keep per file",
            size=info.st_size,
            limit=MAX_RUN_FILE_BYTES,
        )
    relative = real.relative_to(root).as_posix()
    if relative == ".":  # pragma: no cover - the folder itself is not a regular file
        raise InvalidInput(f"track_file: {str(given)!r} is the run's folder itself")
    return relative


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or other special file"


def track_file(path: str | os.PathLike[str]) -> None:
    """Keep the file at ``path`` with the current experiment run (see the module docstring).

    Tracking the same path twice keeps it once; the file's content is read when the run ends.
    Outside an experiment run nothing is recorded and a ``NotRecordedWarning`` says so, once.
    """
    run_id = os.environ.get(backends.RUN_ID_ENV)
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not (run_id and run_dir and os.environ.get(EXPERIMENT_ENV) == "1"):
        _not_recorded(_as_path(path))  # a wrong argument is an error wherever the script runs
        return
    relative = run_file_path(path, run_dir)
    backends.select().track_run_file(run_id, relative)
