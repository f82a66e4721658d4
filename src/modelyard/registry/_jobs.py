"""Jobs: a script (or a monitor spec) in a project folder, run on a schedule by the scheduler
(``modelyard.jobs``), optionally in the environment of a requirements file of the project.

The registry only records them. A job's fields are checked by its spec (``modelyard.specs.JobSpec``:
bounds, the schedule's kind, cron and time zone); the registry adds what needs the other jobs, in
the one transaction that writes: the parent of a dependent job must exist and the ``after`` links
must not form a cycle, so a refused change leaves the database as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.ids import new_crn
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._models import project_of
from modelyard.specs.job import JobSpec, Overlap, check_changes
from modelyard.specs.schedule import CatchUp, JobSchedule, find_cycle, format_cycle

__all__ = ["KINDS", "Job", "Jobs", "find_job", "spec_of"]

_COLUMNS = (
    "id, name, project, script, args, cron, timezone, every_ms, after_id, manual, timeout_ms, "
    "retries, retry_backoff_ms, env, overlap, catch_up, notify, notify_on, paused, builtin, "
    "created_ms, updated_ms, requirements, monitor, secrets, project_crn, kind, label, resources"
)
#: What a job row is: a job users define, or the one-off job that carries out an experiment run
#: (``registry.experiments``; hidden from job lists and the jobs API).
KINDS = ("job", "experiment")
_COLUMN_COUNT = len(_COLUMNS.split(", "))


@dataclass(frozen=True, slots=True)
class Job:
    """A job as recorded. ``schedule.after`` is the parent job's id; ``schedule.anchor_ms`` is
    ``created_ms`` (interval slots count from it). ``notify`` holds webhook URLs and e-mail
    addresses, ``notify_on`` the run outcomes that notify (subset of ``NOTIFY_ON``).

    A job runs exactly one of ``script`` (``python SCRIPT ARGS``) and ``monitor`` (a monitor
    spec: ``python -m modelyard.monitors run SPEC ARGS``); ``requirements`` names the project's
    requirements file whose environment runs use (None: the base interpreter)."""

    id: str
    name: str
    project: str
    script: str | None
    args: tuple[str, ...]
    schedule: JobSchedule
    timeout_ms: int
    retries: int
    retry_backoff_ms: int
    env: dict[str, str] = field(hash=False)
    overlap: Overlap
    catch_up: CatchUp
    notify: tuple[str, ...]
    notify_on: tuple[str, ...]
    paused: bool
    builtin: bool
    created_ms: int
    updated_ms: int
    requirements: str | None = None
    monitor: str | None = None
    secrets: tuple[str, ...] = ()  # project secrets each run gets as environment variables
    project_crn: str | None = None  # None only before the server's first start on version 9
    kind: str = "job"  # or "experiment": a one-off job carrying out an experiment run
    label: str | None = None  # an experiment's display name
    resources: dict[str, Any] = field(default_factory=dict, hash=False)  # an experiment's asks

    @property
    def spec(self) -> JobSpec:
        """The spec this job was made from (its ``after`` as the parent's id)."""
        return spec_of(self)


def _job(row: Any) -> Job:
    created = int(row[20])
    schedule = JobSchedule(
        cron=row[5],
        timezone=row[6],
        every_ms=None if row[7] is None else int(row[7]),
        after=row[8],
        manual=bool(row[9]),
        anchor_ms=created,
    )
    return Job(
        id=row[0],
        name=row[1],
        project=row[2],
        script=row[3],
        args=tuple(orjson.loads(row[4])),
        schedule=schedule,
        timeout_ms=int(row[10]),
        retries=int(row[11]),
        retry_backoff_ms=int(row[12]),
        env=orjson.loads(row[13]),
        overlap=Overlap(row[14]),
        catch_up=CatchUp(row[15]),
        notify=tuple(orjson.loads(row[16])),
        notify_on=tuple(orjson.loads(row[17])),
        paused=bool(row[18]),
        builtin=bool(row[19]),
        created_ms=created,
        updated_ms=int(row[21]),
        requirements=row[22],
        monitor=row[23],
        secrets=tuple(orjson.loads(row[24])),
        project_crn=row[25],
        kind=row[26],
        label=row[27],
        resources=orjson.loads(row[28]) if row[28] else {},
    )


def find_job(db: Db, cur: Cursor, ref: object, *, lock: bool = False) -> Job:
    """The job named ``ref`` (a name or a job id); NotFound naming it and some known names."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(
            f"job {ref!r} is not accepted; expected a job name such as 'nightly-drift' or a job "
            "id 'crn:modelyard:job/<uuid>'",
            job=repr(ref),
        )
    column = "id" if ref.startswith("crn:") else "name"
    tail = db.for_update if lock else ""
    row = db.exec(cur, f"SELECT {_COLUMNS} FROM jobs WHERE {column} = ?{tail}", (ref,)).fetchone()
    if row is None:
        listed = "SELECT name FROM jobs WHERE kind = 'job' ORDER BY name LIMIT 11"
        names = [r[0] for r in db.exec(cur, listed)]
        known = (
            f"known jobs: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
            if names
            else "no jobs are defined yet"
        )
        raise NotFound(f"job {ref!r} does not exist; {known}", job=ref)
    return _job(row)


def spec_of(job: Job) -> JobSpec:
    """The spec ``job`` was made from (its ``after`` as the parent's id)."""
    schedule = job.schedule
    return JobSpec(
        name=job.name,
        project=job.project,
        script=job.script,
        monitor=job.monitor,
        requirements=job.requirements,
        args=job.args,
        cron=schedule.cron,
        timezone=schedule.timezone,
        every_ms=schedule.every_ms,
        after=schedule.after,
        manual=schedule.manual,
        timeout_ms=job.timeout_ms,
        retries=job.retries,
        retry_backoff_ms=job.retry_backoff_ms,
        env=job.env,
        overlap=job.overlap,
        catch_up=job.catch_up,
        notify=job.notify,
        notify_on=job.notify_on,
        secrets=job.secrets,
        cpus=job.resources.get("cpus"),
        memory=job.resources.get("memory"),
        gpus=job.resources.get("gpus") or 0,
        accelerator=job.resources.get("accelerator"),
    )


def _job_of(spec: JobSpec, job_id: str, parent: str | None, **state: Any) -> Job:
    """The record of ``spec``: ``parent`` is the parent's id, ``state`` the fields the spec does
    not hold (paused, builtin, created_ms, updated_ms)."""
    return Job(
        id=job_id,
        name=spec.name,
        project=spec.project,
        script=spec.script,
        monitor=spec.monitor,
        requirements=spec.requirements,
        args=spec.args,
        schedule=JobSchedule(
            spec.cron, spec.timezone, spec.every_ms, parent, spec.manual, state["created_ms"]
        ),
        timeout_ms=spec.timeout_ms,
        retries=spec.retries,
        retry_backoff_ms=spec.retry_backoff_ms,
        env=dict(spec.env),
        overlap=spec.overlap,
        catch_up=spec.catch_up,
        notify=spec.notify,
        notify_on=spec.notify_on,
        secrets=spec.secrets,
        **state,
    )


class Jobs:
    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    def _lock_links(self, cur: Cursor) -> None:
        """Serialise changes of ``after`` links on PostgreSQL, so two concurrent changes cannot
        close a cycle that neither saw (SQLite write transactions are serial already). Taken
        first in a transaction; plain job edits (ROW EXCLUSIVE) wait for it, reads do not."""
        if self._db.dialect == "postgres":
            self._db.exec(cur, "LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")

    def _parent(
        self, cur: Cursor, name: str, job_id: str | None, after: str | None, project: str | None
    ) -> str | None:
        """The parent's id; NotFound if it does not exist, InvalidInput naming the cycle that
        making ``name`` run after it would close, or the parent's other project (a pipeline
        stays in one project: its jobs' runs would otherwise cross project rights)."""
        if after is None:
            return None
        if job_id is not None and after in (job_id, name):
            raise InvalidInput(
                f"job {name!r} cannot run after itself (cycle {name} -> {name}); choose another "
                "parent",
                argument="after",
            )
        parent = find_job(self._db, cur, after)
        if project is not None and parent.project_crn not in (None, project):
            raise InvalidInput(
                f"job {name!r} cannot run after {parent.name!r}: that job belongs to another "
                f"project ({parent.project_crn}, this one is in {project}); a job runs after a "
                "job of its own project",
                argument="after",
            )
        if job_id is not None:
            rows = self._db.exec(cur, "SELECT id, name, after_id FROM jobs").fetchall()
            names = {row[0]: row[1] for row in rows}
            edges = [(names[row[2]], row[1]) for row in rows if row[2] and row[0] != job_id]
            edges.append((parent.name, name))
            cycle = find_cycle(edges, start=name)
            if cycle is not None:
                raise InvalidInput(
                    f"job {name!r} cannot run after {parent.name!r}: that would make the cycle "
                    f"{format_cycle(cycle)}; dependent jobs must form a pipeline without loops",
                    argument="after",
                    cycle=cycle,
                )
        return parent.id

    def create(
        self,
        spec: JobSpec,
        builtin: bool,
        project_crn: str | None = None,
        *,
        kind: str = "job",
        label: str | None = None,
        resources: dict[str, Any] | None = None,
    ) -> Job:
        if kind not in KINDS:
            raise InvalidInput(f"kind={kind!r} is not accepted; accepted: {', '.join(KINDS)}")
        if not isinstance(spec, JobSpec):
            raise InvalidInput(
                f"spec={spec!r:.200} is not accepted; expected a JobSpec (modelyard.specs.JobSpec)"
            )
        if not isinstance(builtin, bool):
            raise InvalidInput(f"builtin={builtin!r} is not accepted; expected True or False")
        name = spec.name
        now = self._now()
        job_id = new_crn("job")

        def insert(cur: Cursor) -> Job:
            if spec.after is not None:
                self._lock_links(cur)
            project = project_of(self._db, cur, project_crn)
            parent = self._parent(cur, name, None, spec.after, project)
            job = _job_of(
                spec,
                job_id,
                parent,
                paused=False,
                builtin=builtin,
                created_ms=now,
                updated_ms=now,
                project_crn=project,
                kind=kind,
                label=label,
                resources=dict(spec.resources if resources is None else resources),
            )
            inserted = self._db.exec(
                cur,
                f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * _COLUMN_COUNT)}) "
                "ON CONFLICT (name) DO NOTHING",
                _row(job),
            ).rowcount
            if inserted != 1:
                raise Conflict(
                    f"a job named {name!r} already exists; choose another name, or update or "
                    "delete the existing job",
                    job=name,
                )
            return job

        return self._db.write(insert)

    def get(self, ref: str) -> Job:
        with self._db.read() as cur:
            return find_job(self._db, cur, ref)

    def list_all(self, project_crn: str | None = None, kind: str = "job") -> list[Job]:
        """The jobs of ``kind`` (users' jobs by default: experiments' jobs are not listed)."""
        where = " WHERE kind = ?" + ("" if project_crn is None else " AND project_crn = ?")
        with self._db.read() as cur:
            rows = self._db.exec(
                cur,
                f"SELECT {_COLUMNS} FROM jobs{where} ORDER BY name",
                (kind,) if project_crn is None else (kind, project_crn),
            ).fetchall()
        return [_job(row) for row in rows]

    def children_of(self, ref: str) -> list[Job]:
        with self._db.read() as cur:
            job = find_job(self._db, cur, ref)
            rows = self._db.exec(
                cur, f"SELECT {_COLUMNS} FROM jobs WHERE after_id = ? ORDER BY name", (job.id,)
            ).fetchall()
        return [_job(row) for row in rows]

    def update(self, ref: str, changes: dict[str, Any]) -> Job:
        check_changes(changes)  # before any read

        def update(cur: Cursor) -> Job:
            if "after" in changes:
                self._lock_links(cur)  # first, before any row lock: no lock-order deadlock
            job = find_job(self._db, cur, ref, lock=True)
            spec = job.spec.changed(changes)
            parent = (
                self._parent(cur, job.name, job.id, spec.after, job.project_crn)
                if "after" in changes
                else spec.after
            )
            updated = _job_of(
                spec,
                job.id,
                parent,
                paused=job.paused,
                builtin=job.builtin,
                created_ms=job.created_ms,
                updated_ms=self._now(),
                project_crn=job.project_crn,
                kind=job.kind,
                label=job.label,
                # a job's resources come from its spec; an experiment's stay as recorded
                resources=spec.resources if job.kind == "job" else job.resources,
            )
            columns = _COLUMNS.split(", ")[2:]
            self._db.exec(
                cur,
                f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
                (*_row(updated)[2:], job.id),
            )
            return updated

        return self._db.write(update)

    def set_paused(self, ref: str, paused: bool) -> Job:
        if not isinstance(paused, bool):
            raise InvalidInput(f"paused={paused!r} is not accepted; expected True or False")

        def pause(cur: Cursor) -> Job:
            job = find_job(self._db, cur, ref, lock=True)
            now = self._now()
            self._db.exec(
                cur,
                "UPDATE jobs SET paused = ?, updated_ms = ? WHERE id = ?",
                (int(paused), now, job.id),
            )
            return find_job(self._db, cur, job.id)

        return self._db.write(pause)

    def delete(self, ref: str) -> None:
        def delete(cur: Cursor) -> None:
            self._lock_links(cur)  # no child may be linked while we look
            job = find_job(self._db, cur, ref, lock=True)
            if job.builtin:
                raise Conflict(
                    f"job {job.name!r} is built in (platform maintenance) and cannot be deleted; "
                    "pause it instead (set_paused / modelyard jobs pause)",
                    job=job.name,
                )
            children = [
                row[0]
                for row in self._db.exec(
                    cur, "SELECT name FROM jobs WHERE after_id = ? ORDER BY name", (job.id,)
                )
            ]
            if children:
                raise Conflict(
                    f"job {job.name!r} is the parent of {', '.join(children)}, which run after "
                    "it; delete those or give them another schedule first",
                    job=job.name,
                    children=children,
                )
            runs = "SELECT id FROM job_runs WHERE job_id = ?"
            for table in ("run_metrics", "run_files"):
                self._db.exec(cur, f"DELETE FROM {table} WHERE run_id IN ({runs})", (job.id,))
            for table, column in (("job_runs", "job_id"), ("job_slots", "job_id"), ("jobs", "id")):
                self._db.exec(cur, f"DELETE FROM {table} WHERE {column} = ?", (job.id,))

        self._db.write(delete)


def _row(job: Job) -> tuple[Any, ...]:
    schedule = job.schedule
    return (
        job.id,
        job.name,
        job.project,
        job.script,
        orjson.dumps(list(job.args)).decode(),
        schedule.cron,
        schedule.timezone,
        schedule.every_ms,
        schedule.after,
        int(schedule.manual),
        job.timeout_ms,
        job.retries,
        job.retry_backoff_ms,
        orjson.dumps(job.env).decode(),
        job.overlap.value,
        job.catch_up.value,
        orjson.dumps(list(job.notify)).decode(),
        orjson.dumps(list(job.notify_on)).decode(),
        int(job.paused),
        int(job.builtin),
        job.created_ms,
        job.updated_ms,
        job.requirements,
        job.monitor,
        orjson.dumps(list(job.secrets)).decode(),
        job.project_crn,
        job.kind,
        job.label,
        orjson.dumps(job.resources).decode(),
    )
