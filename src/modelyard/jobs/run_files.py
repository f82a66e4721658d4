"""What the runner does differently for an experiment run: its writable working folder, its code
version, and the files it kept.

- **Before** (``start_experiment``): the project's snapshot (read-only, shared by every run and
  build with the same content) is copied to ``<home>/runs/<run uuid>/work``, made writable, and
  the run executes there (its cwd and ``MODELYARD_RUN_DIR``, ``experiment_env``). The snapshot's
  digest is recorded as the run's ``code_digest``.
- **After** (``finish_experiment``, once the process ended, whatever its outcome): the files the
  run tracked (``track_file``: rows the server wrote for ``POST /api/v1/runs/{uuid}/files``, plus
  the lines an embedded run appended to ``<home>/runs/<uuid>/files.jsonl``) are read from the
  working folder and kept in the database (``registry.experiments.keep_file``), each checked: it
  must stay inside the folder (symlinks resolved), be a regular file, and fit the limits
  (``MAX_RUN_FILE_BYTES`` each, ``MAX_RUN_FILES_TOTAL_BYTES`` and ``MAX_RUN_FILES`` per run). A
  file that fails is recorded ``failed`` with the reason. Each outcome is a line of the run log.
  Then the working folder is removed. A file the script already sent when it ended (a run that
  talks to a server: ``tracking.run_uploads``, the only way on a runtime that runs the script on
  another machine, such as Ray) is kept already: it is noted, not read again.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from modelyard.clock import now_ms
from modelyard.errors import ModelyardError, NotFound
from modelyard.registry import (
    MAX_RUN_FILE_BYTES,
    MAX_RUN_FILES,
    MAX_RUN_FILES_TOTAL_BYTES,
    Job,
    Registry,
    Run,
)
from modelyard.tracking._env import EXPERIMENT_ENV, RUN_DIR_ENV

__all__ = [
    "EXPERIMENT_KIND",
    "FILES_LOG",
    "THREAD_ENV",
    "experiment_env",
    "finish_experiment",
    "start_experiment",
    "sweep_workdirs",
    "workdir_of",
]

log = logging.getLogger(__name__)

EXPERIMENT_KIND = "experiment"
#: What an embedded run (no server URL) appends ``{"path", "trackedMs"}`` lines to.
FILES_LOG = "files.jsonl"
#: Thread counts of the usual numeric libraries, set from an experiment's ``cpus``.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _uuid(run: Run) -> str:
    return run.id.rsplit("/", 1)[-1]


def workdir_of(home: Path, run: Run) -> Path:
    """``<home>/runs/<run uuid>/work``: the run's working folder."""
    return Path(home) / "runs" / _uuid(run) / "work"


def experiment_env(job: Job, home: Path, run: Run) -> dict[str, str]:
    """What an experiment run gets on top of a job run's environment: its working folder, the
    experiment flag, and thread counts from its ``cpus`` (unless its env sets them)."""
    env = {RUN_DIR_ENV: str(workdir_of(home, run)), EXPERIMENT_ENV: "1"}
    cpus = job.resources.get("cpus")
    if isinstance(cpus, int | float) and cpus > 0:
        for name in THREAD_ENV:
            if name not in job.env:
                env[name] = str(max(1, int(cpus)))
    return env


def start_experiment(
    registry: Registry, home: Path, run: Run, snapshot: Path, digest: str, note: IO[str]
) -> Path:
    """Copy ``snapshot`` to the run's working folder (writable) and record ``digest`` as the
    run's code version; returns the folder."""
    work = workdir_of(home, run)
    if work.exists():
        shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(snapshot, work, symlinks=True)
    for root, dirs, files in os.walk(work):
        for name in dirs + files:
            path = Path(root, name)
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
    work.chmod(work.stat().st_mode | stat.S_IWUSR)
    registry.experiments.set_code_digest(run.id, digest)
    _note(note, f"working folder {work} (code {digest[:12]})")
    return work


def _tracked(registry: Registry, home: Path, run: Run) -> tuple[dict[str, int], list[Any]]:
    """Path -> tracked_ms of every file the run tracked, through the server or embedded, and
    not kept yet; and the ``RunFile``s the script already sent (kept, ``tracking.run_uploads``)."""
    files = registry.experiments.files(run.id)
    sent = [f for f in files if f.state == "kept"]
    found = {f.path: f.tracked_ms for f in files if f.state != "kept"}
    lines = Path(home) / "runs" / _uuid(run) / FILES_LOG
    if lines.is_file():
        with open(lines, "rb") as source:
            for line in source:
                try:
                    entry = orjson.loads(line)
                    found.setdefault(str(entry["path"]), int(entry.get("trackedMs") or now_ms()))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
    return found, sent


def _read(work: Path, path: str) -> bytes:
    """The bytes of ``path`` inside ``work``; ValueError saying why not."""
    full = (work / path).resolve()
    if not full.is_relative_to(work.resolve()):
        raise ValueError(f"it resolves to {full}, outside the run's working folder")
    try:
        info = full.stat()
    except FileNotFoundError:
        raise ValueError(
            "it does not exist when the run ended (in the run's folder on this server; a script "
            "run elsewhere, as on Ray, sends its files itself when it ends)"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("it is not a regular file")
    if info.st_size > MAX_RUN_FILE_BYTES:
        raise ValueError(
            f"it is {info.st_size} bytes; accepted: at most {MAX_RUN_FILE_BYTES} bytes "
            f"({MAX_RUN_FILE_BYTES // 1024 // 1024} MiB) per run file"
        )
    return full.read_bytes()


def finish_experiment(registry: Registry, home: Path, run: Run, log_path: Path) -> list[Any]:
    """Keep the files the run tracked (see the module doc), note each in the run log, remove
    the working folder; returns the ``RunFile`` records written."""
    work = workdir_of(home, run)
    written: list[Any] = []
    try:
        tracked, sent = _tracked(registry, home, run)
        total = sum(f.size or 0 for f in sent)
        with open(log_path, "a", encoding="utf-8") as note:
            for kept in sent:
                _note(
                    note,
                    f"kept file {kept.path} ({kept.size} bytes, sha256 {kept.sha256}, "
                    "sent by the script when it ended)",
                )
            for index, (path, tracked_ms) in enumerate(sorted(tracked.items()), len(sent)):
                try:
                    if index >= MAX_RUN_FILES:
                        raise ValueError(f"accepted: at most {MAX_RUN_FILES} files per run")
                    data = _read(work, path)
                    if total + len(data) > MAX_RUN_FILES_TOTAL_BYTES:
                        raise ValueError(
                            f"it would bring the run's files to {total + len(data)} bytes; "
                            f"accepted: at most {MAX_RUN_FILES_TOTAL_BYTES} bytes per run"
                        )
                    kept = registry.experiments.keep_file(run.id, path, data, tracked_ms)
                    total += len(data)
                    written.append(kept)
                    _note(note, f"kept file {path} ({len(data)} bytes, sha256 {kept.sha256})")
                except (ValueError, OSError, ModelyardError) as exc:
                    reason = exc.message if isinstance(exc, ModelyardError) else str(exc)
                    error = f"file {path!r} was not kept: {reason}"
                    try:
                        written.append(
                            registry.experiments.fail_file(run.id, path, error, tracked_ms)
                        )
                    except ModelyardError as failed:  # a path the registry refuses
                        error = f"file {path!r} was not kept: {failed.message}"
                    _note(note, error)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        (Path(home) / "runs" / _uuid(run) / FILES_LOG).unlink(missing_ok=True)
    return written


def _note(out: IO[str], message: str) -> None:
    out.write(f"[modelyard] {message}\n")
    out.flush()


def sweep_workdirs(registry: Registry, home: Path, is_active: Callable[[str], bool]) -> list[str]:
    """Collect and remove the working folders a crashed server left under ``<home>/runs``.

    A folder is left over when its run has finished (a crash between the process's end and
    ``finish_experiment``, or a run ``Scheduler.recover`` marked failed) and no run of this
    process carries it (``is_active``): its tracked files are kept as at a normal end, with a
    line in the run's log, then the folder goes. A folder whose run is unknown (deleted) is
    removed. Returns the run ids swept."""
    swept: list[str] = []
    runs = Path(home) / "runs"
    for work in sorted(runs.glob("*/work")) if runs.is_dir() else []:
        run_id = f"crn:modelyard:run/{work.parent.name}"
        if is_active(run_id):
            continue
        try:
            run = registry.get_run(run_id)
        except NotFound:
            shutil.rmtree(work, ignore_errors=True)
            continue
        if not run.state.finished:
            continue  # still queued or running: its own runner (here or elsewhere) finishes it
        log_path = Path(run.log_path) if run.log_path else work.parent / "swept.log"
        try:
            finish_experiment(registry, home, run, log_path)
        except (OSError, ModelyardError):
            log.exception("could not collect the files of run %s", run.id)
            shutil.rmtree(work, ignore_errors=True)
        swept.append(run.id)
    return swept
