"""Experiments: runs of one script with its arguments in a snapshot of a project, and the files
they keep (``registry.experiments``).

An experiment is recorded as a one-off manual job of kind ``experiment`` (named
``experiment-<12 hex>``, hidden from job lists) with one run, so the job runner carries it out
like any run: logs, cancel, timeout, the run's own key, secrets and env. What an experiment adds:

- its display ``label`` and the ``resources`` it asked for (on the job row), and the digest of
  the snapshot its run executed (``job_runs.code_digest``, set by the runner);
- its metrics are the run's metrics (``run_metrics``), limited for experiment runs to
  ``MAX_EXPERIMENT_METRIC_KEYS`` distinct keys and ``MAX_EXPERIMENT_METRIC_VALUES`` values, and
  to scalars (``check_experiment_metrics``, called by ``RunMetrics.add_metrics``);
- the files the script kept with ``track_file`` (``run_files``): a row is written ``tracked``
  when the script names a file (``track_file``) and becomes ``kept`` with its bytes
  (``keep_file``) or ``failed`` with the reason (``fail_file``) when the runner collects it after
  the process ended. Bytes live in the database, so any server can serve them and a model can be
  built from them (``--from-run``). Files go with their run (prune) or their job (delete).
"""

from __future__ import annotations

import builtins
import hashlib
import posixpath
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from modelyard.ids import is_uuid
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._jobs import _COLUMNS as _JOB_COLUMNS
from modelyard.registry._jobs import Job, Jobs, _job
from modelyard.registry._prefix import SHOWN, check_prefix, choose
from modelyard.registry._runs import _COLUMNS as _RUN_COLUMNS
from modelyard.registry._runs import Run, Runs, RunState, _run, find_run
from modelyard.specs.checks import check_text
from modelyard.specs.experiment import ExperimentSpec

__all__ = [
    "FILE_STATES",
    "MAX_EXPERIMENT_METRIC_KEYS",
    "MAX_EXPERIMENT_METRIC_VALUES",
    "MAX_RUN_FILES",
    "MAX_RUN_FILES_TOTAL_BYTES",
    "MAX_RUN_FILE_BYTES",
    "Experiment",
    "Experiments",
    "RunFile",
    "check_experiment_metrics",
    "check_run_file_path",
]

MAX_RUN_FILE_BYTES = 64 * 1024 * 1024
MAX_RUN_FILES = 100
MAX_RUN_FILES_TOTAL_BYTES = 256 * 1024 * 1024
MAX_EXPERIMENT_METRIC_KEYS = 100
MAX_EXPERIMENT_METRIC_VALUES = 10_000
MAX_LIST = 1_000
FILE_STATES = ("tracked", "kept", "failed")
_MAX_PATH = 1024
_FILE_COLUMNS = "run_id, path, state, size, sha256, error, tracked_ms, kept_ms"
_RUN_HEAD = "crn:modelyard:run/"


@dataclass(frozen=True, slots=True)
class RunFile:
    """A file an experiment run kept: ``state`` is ``tracked`` (named by the script, not yet
    collected), ``kept`` (``size`` bytes with ``sha256``, stored at ``kept_ms``) or ``failed``
    (``error`` says why). ``path`` is relative to the run's working folder."""

    run_id: str
    path: str
    state: str
    size: int | None
    sha256: str | None
    error: str | None
    tracked_ms: int
    kept_ms: int | None


@dataclass(frozen=True, slots=True)
class Experiment:
    """An experiment run as shown: its ``run`` and ``job`` (script, args, requirements, env),
    ``label``, the ``resources`` it asked for, the ``code_digest`` of the snapshot it ran,
    ``metrics`` (the last value of each key), ``history`` (every value of each key, with when it
    was tracked, in order) and ``files``."""

    run: Run
    job: Job
    label: str | None
    resources: dict[str, Any] = field(hash=False)
    code_digest: str | None
    metrics: dict[str, Any] = field(hash=False)
    files: list[RunFile] = field(hash=False)
    history: dict[str, list[tuple[int, Any]]] = field(default_factory=dict, hash=False)
    created_by: str | None = None


def _file(row: Any) -> RunFile:
    return RunFile(
        run_id=row[0],
        path=row[1],
        state=row[2],
        size=None if row[3] is None else int(row[3]),
        sha256=row[4],
        error=row[5],
        tracked_ms=int(row[6]),
        kept_ms=None if row[7] is None else int(row[7]),
    )


def check_run_file_path(path: object) -> str:
    """``path`` as a run file's name: relative to the run's folder, '/'-separated, normalised,
    without '..'; InvalidInput naming it otherwise."""
    accepted = "a path relative to the run's working folder, such as 'model.pkl' or 'out/a.csv'"
    if not isinstance(path, str) or not path or len(path) > _MAX_PATH or "\x00" in path:
        raise InvalidInput(
            f"run file path {path!r:.200} is not accepted; expected {accepted} (at most "
            f"{_MAX_PATH} characters)",
            path=repr(path)[:200],
        )
    normal = posixpath.normpath(path.replace("\\", "/"))
    if normal.startswith("/") or normal == ".." or normal.startswith("../") or normal == ".":
        raise InvalidInput(
            f"run file path {path!r} leaves the run's working folder; expected {accepted}",
            path=path,
        )
    return normal


def _scalar(key: str, value: object) -> None:
    if value is None or isinstance(value, bool | int | float | str):
        return
    raise InvalidInput(
        f"experiment metric {key!r} has the value {value!r:.100} ({type(value).__name__}); an "
        "experiment run records scalars only: accepted: a number, a boolean or a string (numpy "
        "scalars are converted by track_metric)",
        metric=key,
    )


def check_experiment_metrics(db: Db, cur: Cursor, run_id: str, metrics: dict[str, Any]) -> None:
    """Refuse ``metrics`` for an experiment run (a no-op for other runs) when a value is not a
    scalar, or when recording them would pass ``MAX_EXPERIMENT_METRIC_KEYS`` distinct keys or
    ``MAX_EXPERIMENT_METRIC_VALUES`` values for the run; InvalidInput naming the limit."""
    row = db.exec(
        cur,
        "SELECT j.kind FROM job_runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ?",
        (run_id,),
    ).fetchone()
    if row is None or row[0] != "experiment":
        return
    for key, value in metrics.items():
        _scalar(key, value)
    keys = {
        r[0]
        for r in db.exec(
            cur, "SELECT DISTINCT key FROM run_metrics WHERE run_id = ?", (run_id,)
        ).fetchall()
    }
    new = sorted(set(metrics) - keys)
    if len(keys) + len(new) > MAX_EXPERIMENT_METRIC_KEYS:
        raise InvalidInput(
            f"experiment run {run_id} has {len(keys)} metric keys, and {new[0]!r} would pass "
            f"the limit; accepted: at most {MAX_EXPERIMENT_METRIC_KEYS} distinct keys per "
            "experiment run",
            run=run_id,
            metric=new[0],
        )
    count = int(
        db.exec(cur, "SELECT COUNT(*) FROM run_metrics WHERE run_id = ?", (run_id,)).fetchone()[0]
    )
    if count + len(metrics) > MAX_EXPERIMENT_METRIC_VALUES:
        raise InvalidInput(
            f"experiment run {run_id} has {count} metric values, and {len(metrics)} more would "
            f"pass the limit; accepted: at most {MAX_EXPERIMENT_METRIC_VALUES} values per "
            "experiment run",
            run=run_id,
        )


class Experiments:
    """``registry.experiments``: create, read and compare experiment runs; their files."""

    def __init__(self, db: Db, clock: Clock, jobs: Jobs, runs: Runs) -> None:
        self._db = db
        self._now = clock
        self._jobs = jobs
        self._runs = runs

    # -- create ------------------------------------------------------------------------------
    def create(
        self, spec: ExperimentSpec, project_crn: str | None, created_by: str | None = None
    ) -> Job:
        """The one-off manual job that carries out ``spec`` (its ``project`` folder set), of
        kind ``experiment``, in ``project_crn`` (None: the default project). The caller starts
        its run (``Scheduler.trigger``)."""
        if not isinstance(spec, ExperimentSpec):
            raise InvalidInput(
                f"spec={spec!r:.200} is not accepted; expected an ExperimentSpec "
                "(modelyard.specs.experiment)"
            )
        created_by = check_text("created_by", created_by, max_len=200, optional=True)
        name = f"experiment-{uuid.uuid4().hex[:12]}"
        resources = {**spec.resources, "created_by": created_by}
        return self._jobs.create(
            spec.job_spec(name),
            False,
            project_crn,
            kind="experiment",
            label=spec.label,
            resources=resources,
        )

    def set_code_digest(self, run_id: str, digest: str) -> None:
        """Record the digest of the snapshot ``run_id`` executes (its code version)."""
        digest = check_text("code_digest", digest, max_len=200)

        def update(cur: Cursor) -> None:
            run = find_run(self._db, cur, run_id)
            self._db.exec(cur, "UPDATE job_runs SET code_digest = ? WHERE id = ?", (digest, run.id))

        self._db.write(update)

    # -- read ---------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """The run id ``ref`` names (a run crn, uuid or unambiguous uuid prefix)."""
        if not isinstance(ref, str) or not ref:
            raise InvalidInput(
                f"run {ref!r} is not accepted; expected an experiment run's id, uuid or the "
                "first 4 or more characters of its uuid",
                run=repr(ref),
            )
        if is_uuid(ref.removeprefix(_RUN_HEAD)):
            return _RUN_HEAD + ref.removeprefix(_RUN_HEAD)
        prefix = check_prefix(ref, "run", "'modelyard experiments show 8f5c3d1a'")
        found = self._runs.ids_with_prefix(prefix, SHOWN + 1)
        return choose(ref, "run", found, "'modelyard experiments list' lists experiment runs")

    def _find(self, cur: Cursor, ref: str, run_id: str) -> tuple[Run, Job]:
        """The run ``run_id`` (``resolve(ref)``, resolved before the transaction) and its job."""
        row = self._db.exec(
            cur,
            f"SELECT {_joined()} FROM job_runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise NotFound(
                f"experiment run {ref!r} does not exist; 'modelyard experiments list' lists "
                "experiment runs",
                run=ref,
            )
        run, job = _split(row)
        if job.kind != "experiment":
            raise NotFound(
                f"run {ref!r} is a run of job {job.name!r}, not an experiment run; "
                "'modelyard jobs runs' shows it, 'modelyard experiments list' lists experiments",
                run=ref,
            )
        return run, job

    def run_of(self, ref: str) -> Run:
        """The experiment run ``ref`` names; NotFound for an unknown run or a job's run."""
        run_id = self.resolve(ref)
        with self._db.read() as cur:
            return self._find(cur, ref, run_id)[0]

    def get(self, ref: str) -> Experiment:
        """The experiment run ``ref`` names with its metrics (and their history) and files."""
        run_id = self.resolve(ref)
        with self._db.read() as cur:
            run, job = self._find(cur, ref, run_id)
            return self._experiments(cur, [(run, job)], history=True)[0]

    def list(self, project_crn: str | None = None, limit: int = 100) -> builtins.list[Experiment]:
        """Experiment runs (of one project, by CRN), newest first, at most ``limit``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InvalidInput(
                f"limit={limit!r} is not accepted; expected an integer from 1 to {MAX_LIST}",
                argument="limit",
            )
        where = "j.kind = 'experiment'" + ("" if project_crn is None else " AND j.project_crn = ?")
        with self._db.read() as cur:
            rows = self._db.exec(
                cur,
                f"SELECT {_joined()} FROM job_runs r JOIN jobs j ON j.id = r.job_id "
                f"WHERE {where} ORDER BY r.queued_ms DESC, r.seq DESC LIMIT ?",
                (limit,) if project_crn is None else (project_crn, limit),
            ).fetchall()
            return self._experiments(cur, [_split(row) for row in rows], history=False)

    def compare(self, refs: Sequence[str]) -> builtins.list[Experiment]:
        """The experiment runs ``refs`` name, in that order, with their metrics' history."""
        ids = [self.resolve(ref) for ref in refs]
        with self._db.read() as cur:
            found = [self._find(cur, ref, run_id) for ref, run_id in zip(refs, ids, strict=True)]
            return self._experiments(cur, found, history=True)

    def _experiments(
        self, cur: Cursor, pairs: Sequence[tuple[Run, Job]], *, history: bool
    ) -> builtins.list[Experiment]:
        ids = [run.id for run, _ in pairs]
        values: dict[str, list[tuple[str, Any, int]]] = {i: [] for i in ids}
        files: dict[str, list[RunFile]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ", ".join("?" * len(batch))
            for row in self._db.exec(
                cur,
                f"SELECT run_id, key, value, tracked_ms FROM run_metrics WHERE run_id IN "
                f"({marks}) ORDER BY seq",
                batch,
            ).fetchall():
                values[row[0]].append((row[1], orjson.loads(row[2]), int(row[3])))
            for row in self._db.exec(
                cur,
                f"SELECT {_FILE_COLUMNS} FROM run_files WHERE run_id IN ({marks}) ORDER BY path",
                batch,
            ).fetchall():
                files[row[0]].append(_file(row))
        shown = []
        for run, job in pairs:
            last: dict[str, Any] = {}
            kept: dict[str, list[tuple[int, Any]]] = {}
            for key, value, when in values[run.id]:
                last[key] = value
                if history:
                    kept.setdefault(key, []).append((when, value))
            resources = dict(job.resources)
            created_by = resources.pop("created_by", None)
            shown.append(
                Experiment(
                    run=run,
                    job=job,
                    label=job.label,
                    resources=resources,
                    code_digest=run.code_digest,
                    metrics=last,
                    files=files[run.id],
                    history=kept,
                    created_by=created_by,
                )
            )
        return shown

    def delete(self, ref: str) -> Run:
        """Remove experiment run ``ref`` with its job, metrics and files; Conflict while it is
        queued or running (cancel it first). Returns the run as it was (its log is the caller's
        to remove)."""
        run = self.run_of(ref)
        if not run.state.finished:
            raise Conflict(
                f"experiment run {run.id} is {run.state.value}; cancel it first, then delete it",
                run=run.id,
            )
        self._jobs.delete(run.job_id)
        return run

    # -- files --------------------------------------------------------------------------------
    def files(self, ref: str) -> builtins.list[RunFile]:
        """The files experiment run ``ref`` tracked, by path (no bytes)."""
        run_id = self.resolve(ref)
        with self._db.read() as cur:
            run, _ = self._find(cur, ref, run_id)
            rows = self._db.exec(
                cur,
                f"SELECT {_FILE_COLUMNS} FROM run_files WHERE run_id = ? ORDER BY path",
                (run.id,),
            ).fetchall()
        return [_file(row) for row in rows]

    def file_data(self, ref: str, path: str) -> bytes:
        """The bytes of the kept file ``path`` of experiment run ``ref``; NotFound naming the
        path and the files the run kept."""
        normal = check_run_file_path(path)
        run_id = self.resolve(ref)
        with self._db.read() as cur:
            run, _ = self._find(cur, ref, run_id)
            row = self._db.exec(
                cur,
                "SELECT state, data, error FROM run_files WHERE run_id = ? AND path = ?",
                (run.id, normal),
            ).fetchone()
            if row is not None and row[0] == "kept" and row[1] is not None:
                return bytes(row[1])
            kept = [
                r[0]
                for r in self._db.exec(
                    cur,
                    "SELECT path FROM run_files WHERE run_id = ? AND state = 'kept' ORDER BY path",
                    (run.id,),
                ).fetchall()
            ]
        listed = ", ".join(kept[:20]) + (", ..." if len(kept) > 20 else "") if kept else "none"
        why = (
            "was not tracked by the run"
            if row is None
            else f"was not kept ({row[0]}{': ' + row[2] if row[2] else ''})"
        )
        raise NotFound(
            f"file {path!r} of experiment run {run.id} {why}; the run kept: {listed}",
            run=run.id,
            path=path,
            kept=kept,
        )

    def track_file(self, run_id: str, path: str) -> RunFile:
        """Note that running experiment run ``run_id`` keeps ``path`` (collected when its
        process ends); idempotent per path. InvalidInput for a bad path or one file too many,
        Conflict for a run that ended, NotFound for an unknown or non-experiment run."""
        normal = check_run_file_path(path)
        resolved = self.resolve(run_id)

        def insert(cur: Cursor) -> RunFile:
            run, _ = self._find(cur, run_id, resolved)
            if run.state is not RunState.RUNNING:
                raise Conflict(
                    f"experiment run {run.id} is {run.state.value}; files are tracked while the "
                    "run is running only",
                    run=run.id,
                )
            existing = self._row(cur, run.id, normal)
            if existing is not None:
                return existing
            count = int(
                self._db.exec(
                    cur, "SELECT COUNT(*) FROM run_files WHERE run_id = ?", (run.id,)
                ).fetchone()[0]
            )
            if count >= MAX_RUN_FILES:
                raise InvalidInput(
                    f"experiment run {run.id} tracks {count} files already, and {normal!r} would "
                    f"pass the limit; accepted: at most {MAX_RUN_FILES} files per run",
                    run=run.id,
                    path=normal,
                )
            self._db.exec(
                cur,
                "INSERT INTO run_files (run_id, path, state, tracked_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id, path) DO NOTHING",
                (run.id, normal, "tracked", self._now()),
            )
            found = self._row(cur, run.id, normal)
            assert found is not None
            return found

        return self._db.write(insert)

    def keep_file(
        self, run_id: str, path: str, data: bytes, tracked_ms: int | None = None
    ) -> RunFile:
        """Store ``data`` as the kept file ``path`` of run ``run_id``. PayloadTooLarge for a file
        over ``MAX_RUN_FILE_BYTES`` or a run whose kept files would pass
        ``MAX_RUN_FILES_TOTAL_BYTES``; InvalidInput past ``MAX_RUN_FILES`` files."""
        normal = check_run_file_path(path)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(f"data of run file {normal!r} is not bytes; expected bytes")
        data = bytes(data)
        if len(data) > MAX_RUN_FILE_BYTES:
            raise PayloadTooLarge(
                f"file {normal!r} is {len(data)} bytes; accepted: at most {MAX_RUN_FILE_BYTES} "
                f"bytes ({MAX_RUN_FILE_BYTES // 1024 // 1024} MiB) per run file",
                path=normal,
            )
        digest = hashlib.sha256(data).hexdigest()

        def upsert(cur: Cursor) -> RunFile:
            run = find_run(self._db, cur, run_id)
            others = self._db.exec(
                cur,
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN state = 'kept' THEN size ELSE 0 END), 0) "
                "FROM run_files WHERE run_id = ? AND path <> ?",
                (run.id, normal),
            ).fetchone()
            if int(others[0]) >= MAX_RUN_FILES:
                raise InvalidInput(
                    f"experiment run {run.id} has {int(others[0])} files already, and {normal!r} "
                    f"would pass the limit; accepted: at most {MAX_RUN_FILES} files per run",
                    path=normal,
                )
            total = int(others[1]) + len(data)
            if total > MAX_RUN_FILES_TOTAL_BYTES:
                raise PayloadTooLarge(
                    f"file {normal!r} ({len(data)} bytes) would bring the run's kept files to "
                    f"{total} bytes; accepted: at most {MAX_RUN_FILES_TOTAL_BYTES} bytes "
                    f"({MAX_RUN_FILES_TOTAL_BYTES // 1024 // 1024} MiB) per run",
                    path=normal,
                )
            now = self._now()
            self._upsert(cur, run.id, normal, tracked_ms or now)
            self._db.exec(
                cur,
                "UPDATE run_files SET state = 'kept', size = ?, sha256 = ?, data = ?, "
                "error = NULL, kept_ms = ? WHERE run_id = ? AND path = ?",
                (len(data), digest, data, now, run.id, normal),
            )
            found = self._row(cur, run.id, normal)
            assert found is not None
            return found

        return self._db.write(upsert)

    def fail_file(
        self, run_id: str, path: str, error: str, tracked_ms: int | None = None
    ) -> RunFile:
        """Record that file ``path`` of run ``run_id`` could not be kept, and why."""
        normal = check_run_file_path(path)
        error = check_text("error", str(error)[:2000] or "unknown", max_len=2000)

        def upsert(cur: Cursor) -> RunFile:
            run = find_run(self._db, cur, run_id)
            self._upsert(cur, run.id, normal, tracked_ms or self._now())
            self._db.exec(
                cur,
                "UPDATE run_files SET state = 'failed', size = NULL, sha256 = NULL, data = NULL, "
                "error = ?, kept_ms = NULL WHERE run_id = ? AND path = ?",
                (error, run.id, normal),
            )
            found = self._row(cur, run.id, normal)
            assert found is not None
            return found

        return self._db.write(upsert)

    def _upsert(self, cur: Cursor, run_id: str, path: str, tracked_ms: int) -> None:
        self._db.exec(
            cur,
            "INSERT INTO run_files (run_id, path, state, tracked_ms) VALUES (?, ?, 'tracked', ?) "
            "ON CONFLICT (run_id, path) DO NOTHING",
            (run_id, path, tracked_ms),
        )

    def _row(self, cur: Cursor, run_id: str, path: str) -> RunFile | None:
        row = self._db.exec(
            cur,
            f"SELECT {_FILE_COLUMNS} FROM run_files WHERE run_id = ? AND path = ?",
            (run_id, path),
        ).fetchone()
        return None if row is None else _file(row)


def _joined() -> str:
    runs = ", ".join(f"r.{c}" for c in _RUN_COLUMNS.split(", "))
    jobs = ", ".join(f"j.{c}" for c in _JOB_COLUMNS.split(", "))
    return f"{runs}, {jobs}"


_RUN_COUNT = len(_RUN_COLUMNS.split(", "))


def _split(row: Any) -> tuple[Run, Job]:
    values = tuple(row)
    return _run(values[:_RUN_COUNT]), _job(values[_RUN_COUNT:])
