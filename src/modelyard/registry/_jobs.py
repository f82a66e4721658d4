"""Jobs: a script (or a monitor spec) in a project folder, run on a schedule by the scheduler
(``modelyard.jobs``), optionally in the environment of a requirements file of the project.

The registry only records them. Every change is checked in full before anything is written, in
one transaction: the schedule (exactly one kind; cron and time zone through
``modelyard.jobs.schedule``), bounds, the parent of a dependent job (it must exist, and the
``after`` links must not form a cycle), so a refused change leaves the database as it was.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.ids import new_crn
from modelyard.jobs.schedule import CatchUp, JobSchedule, find_cycle, format_cycle
from modelyard.registry._checks import (
    MODEL_NAME_RULE,
    check_env,
    check_relative_path,
    check_text,
)
from modelyard.registry._db import Clock, Cursor, Db

__all__ = [
    "JOB_RESERVED_ENV",
    "MAX_RETRIES",
    "MAX_TIMEOUT_MS",
    "MIN_TIMEOUT_MS",
    "NOTIFY_ON",
    "UPDATABLE",
    "Job",
    "Jobs",
    "Overlap",
    "find_job",
]

MIN_TIMEOUT_MS = 1_000
MAX_TIMEOUT_MS = 7 * 86_400_000
MAX_RETRIES = 10
MAX_BACKOFF_MS = 86_400_000
MAX_ARGS = 256
MAX_NOTIFY = 20
NOTIFY_ON = ("success", "failure", "timeout", "cancelled")
# The runner sets these for every run; a job's env must not override them.
JOB_RESERVED_ENV = frozenset(
    {
        "MODELYARD_URL",
        "MODELYARD_API_KEY",
        "MODELYARD_JOB",
        "MODELYARD_RUN_ID",
        "MODELYARD_SCHEDULED_AT",
    }
)
_SCHEDULE_KEYS = ("cron", "every_ms", "after", "manual")
UPDATABLE = (
    "project",
    "script",
    "monitor",
    "requirements",
    "args",
    "cron",
    "timezone",
    "every_ms",
    "after",
    "manual",
    "timeout_ms",
    "retries",
    "retry_backoff_ms",
    "env",
    "overlap",
    "catch_up",
    "notify",
    "notify_on",
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
_COLUMNS = (
    "id, name, project, script, args, cron, timezone, every_ms, after_id, manual, timeout_ms, "
    "retries, retry_backoff_ms, env, overlap, catch_up, notify, notify_on, paused, builtin, "
    "created_ms, updated_ms, requirements, monitor"
)


class Overlap(StrEnum):
    """What the scheduler does with a slot while a run of the job is still going: ``skip`` it
    (recorded, not run), ``queue`` it (runs when the previous run ends) or ``allow`` it (runs
    at once, side by side)."""

    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"


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
        names = [r[0] for r in db.exec(cur, "SELECT name FROM jobs ORDER BY name LIMIT 11")]
        known = (
            f"known jobs: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
            if names
            else "no jobs are defined yet"
        )
        raise NotFound(f"job {ref!r} does not exist; {known}", job=ref)
    return _job(row)


# -- checks --------------------------------------------------------------------------------------
def check_job_name(name: object) -> str:
    if not isinstance(name, str) or MODEL_NAME_RULE.match(name) is None:
        raise InvalidInput(
            f"job name {name!r} is not accepted; a name is 1 to 63 characters of lowercase "
            "letters, digits and '-', starting with a letter or digit (e.g. 'nightly-drift'), "
            "because it appears in URLs",
            name=repr(name),
        )
    return name


def _int_in(argument: str, value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"{argument}={value!r} is not accepted; expected {what}", argument=argument
        )
    return value


def _project(value: object) -> str:
    text: str = check_text("project", value, max_len=4096)
    if not os.path.isabs(text):
        raise InvalidInput(
            f"project={text!r} is not an absolute path; expected the project folder's absolute "
            "path (the CLI resolves --project DIR for you)",
            argument="project",
        )
    return text


def _script_or_monitor(script: object, monitor: object) -> tuple[str | None, str | None]:
    """Exactly one of a script and a monitor spec, each a path inside the project."""
    checked_script = check_relative_path("script", script)
    checked_monitor = check_relative_path("monitor", monitor)
    if (checked_script is None) == (checked_monitor is None):
        given = "both were given" if checked_script is not None else "neither was given"
        raise InvalidInput(
            f"script={checked_script!r} and monitor={checked_monitor!r}: {given}; a job runs "
            "either a script (its path inside the project, such as 'monitor.py') or a monitor "
            "spec (such as 'monitor.yaml')",
            argument="script",
        )
    return checked_script, checked_monitor


def _strings(argument: str, value: object, limit: int) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput(
            f"{argument}={value!r} is not accepted; expected a list of strings",
            argument=argument,
        )
    items = tuple(value)
    if len(items) > limit:
        raise InvalidInput(
            f"{argument} has {len(items)} items; accepted: at most {limit}", argument=argument
        )
    for item in items:
        if not isinstance(item, str) or "\x00" in item or len(item) > 4096:
            raise InvalidInput(
                f"{argument} item {item!r} is not accepted; expected a string of at most 4096 "
                "characters without NUL bytes",
                argument=argument,
            )
    return items


def _job_env(value: object) -> dict[str, str]:
    env = check_env(value)
    reserved = sorted(JOB_RESERVED_ENV & set(env))
    if reserved:
        raise InvalidInput(
            f"env variable {reserved[0]!r} is set by Modelyard for every run; accepted: any name "
            f"except {', '.join(sorted(JOB_RESERVED_ENV))}",
            argument="env",
        )
    return env


def _choice(argument: str, value: object, enum: type[StrEnum]) -> Any:
    if isinstance(value, str) and value in {m.value for m in enum}:
        return enum(value)
    raise InvalidInput(
        f"{argument}={value!r} is not accepted; accepted: {', '.join(m.value for m in enum)}",
        argument=argument,
    )


def _notify(value: object) -> tuple[str, ...]:
    targets = _strings("notify", value, MAX_NOTIFY)
    for target in targets:
        if _URL.match(target) is None and _EMAIL.match(target) is None:
            raise InvalidInput(
                f"notify target {target!r} is neither a webhook URL nor an e-mail address; "
                "expected 'https://hooks.example.com/path' or 'ops@example.com'",
                argument="notify",
            )
    return tuple(dict.fromkeys(targets))


def _notify_on(value: object) -> tuple[str, ...]:
    events = _strings("notify_on", value, len(NOTIFY_ON) * 4)
    unknown = [e for e in events if e not in NOTIFY_ON]
    if unknown:
        raise InvalidInput(
            f"notify_on={list(events)!r}: {unknown[0]!r} is not an outcome; accepted: any of "
            f"{', '.join(NOTIFY_ON)}",
            argument="notify_on",
        )
    return tuple(e for e in NOTIFY_ON if e in events)


def _checked(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Every field but the name and the parent, checked and normalised for storage."""
    script, monitor = _script_or_monitor(fields.get("script"), fields.get("monitor"))
    return {
        "project": _project(fields["project"]),
        "script": script,
        "monitor": monitor,
        "requirements": check_relative_path("requirements", fields.get("requirements")),
        "args": _strings("args", fields["args"], MAX_ARGS),
        "timeout_ms": _int_in(
            "timeout_ms",
            fields["timeout_ms"],
            MIN_TIMEOUT_MS,
            MAX_TIMEOUT_MS,
            f"milliseconds from {MIN_TIMEOUT_MS} (1 s) to {MAX_TIMEOUT_MS} (7 days)",
        ),
        "retries": _int_in(
            "retries", fields["retries"], 0, MAX_RETRIES, f"an integer from 0 to {MAX_RETRIES}"
        ),
        "retry_backoff_ms": _int_in(
            "retry_backoff_ms",
            fields["retry_backoff_ms"],
            0,
            MAX_BACKOFF_MS,
            f"milliseconds from 0 to {MAX_BACKOFF_MS} (1 day)",
        ),
        "env": _job_env(fields["env"]),
        "overlap": _choice("overlap", fields["overlap"], Overlap),
        "catch_up": _choice("catch_up", fields["catch_up"], CatchUp),
        "notify": _notify(fields["notify"]),
        "notify_on": _notify_on(fields["notify_on"]),
    }


def _schedule(fields: Mapping[str, Any], anchor_ms: int) -> JobSchedule:
    return JobSchedule.of(
        cron=fields["cron"],
        timezone=fields["timezone"],
        every_ms=fields["every_ms"],
        after=fields["after"],
        manual=fields["manual"],
        anchor_ms=anchor_ms,
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

    def _parent(self, cur: Cursor, name: str, job_id: str | None, after: str | None) -> str | None:
        """The parent's id; NotFound if it does not exist, InvalidInput naming the cycle that
        making ``name`` run after it would close."""
        if after is None:
            return None
        if job_id is not None and after in (job_id, name):
            raise InvalidInput(
                f"job {name!r} cannot run after itself (cycle {name} -> {name}); choose another "
                "parent",
                argument="after",
            )
        parent = find_job(self._db, cur, after)
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

    def create(self, name: str, fields: dict[str, Any], builtin: bool) -> Job:
        name = check_job_name(name)
        if not isinstance(builtin, bool):
            raise InvalidInput(f"builtin={builtin!r} is not accepted; expected True or False")
        checked = _checked(fields)
        now = self._now()
        schedule = _schedule(fields, now)  # checks the kinds, cron and time zone
        job_id = new_crn("job")

        def insert(cur: Cursor) -> Job:
            if schedule.after is not None:
                self._lock_links(cur)
            parent = self._parent(cur, name, None, schedule.after)
            job = Job(
                id=job_id,
                name=name,
                schedule=JobSchedule(
                    schedule.cron,
                    schedule.timezone,
                    schedule.every_ms,
                    parent,
                    schedule.manual,
                    now,
                ),
                paused=False,
                builtin=builtin,
                created_ms=now,
                updated_ms=now,
                **checked,
            )
            inserted = self._db.exec(
                cur,
                f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * 24)}) "
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

    def list_all(self) -> list[Job]:
        with self._db.read() as cur:
            rows = self._db.exec(cur, f"SELECT {_COLUMNS} FROM jobs ORDER BY name").fetchall()
        return [_job(row) for row in rows]

    def children_of(self, ref: str) -> list[Job]:
        with self._db.read() as cur:
            job = find_job(self._db, cur, ref)
            rows = self._db.exec(
                cur, f"SELECT {_COLUMNS} FROM jobs WHERE after_id = ? ORDER BY name", (job.id,)
            ).fetchall()
        return [_job(row) for row in rows]

    def update(self, ref: str, changes: dict[str, Any]) -> Job:
        unknown = sorted(set(changes) - set(UPDATABLE))
        if unknown:
            raise InvalidInput(
                f"job field {unknown[0]!r} cannot be updated; accepted: {', '.join(UPDATABLE)} "
                "(set_paused pauses and resumes)",
                argument=unknown[0],
            )

        def update(cur: Cursor) -> Job:
            if "after" in changes:
                self._lock_links(cur)  # first, before any row lock: no lock-order deadlock
            job = find_job(self._db, cur, ref, lock=True)
            old = job.schedule
            fields: dict[str, Any] = {
                "project": job.project,
                "script": job.script,
                "monitor": job.monitor,
                "requirements": job.requirements,
                "args": job.args,
                "timeout_ms": job.timeout_ms,
                "retries": job.retries,
                "retry_backoff_ms": job.retry_backoff_ms,
                "env": job.env,
                "overlap": job.overlap.value,
                "catch_up": job.catch_up.value,
                "notify": job.notify,
                "notify_on": job.notify_on,
                "cron": old.cron,
                "timezone": old.timezone,
                "every_ms": old.every_ms,
                "after": old.after,
                "manual": old.manual,
            }
            if any(key in changes for key in _SCHEDULE_KEYS):
                # A new schedule replaces the old one whole; the time zone stays with cron.
                for key in _SCHEDULE_KEYS:
                    fields[key] = changes.get(key, False if key == "manual" else None)
                if changes.get("cron") is None or old.cron is None:
                    fields["timezone"] = "UTC"
            # A new script replaces a monitor spec and the other way round.
            if changes.get("script") is not None and "monitor" not in changes:
                fields["monitor"] = None
            if changes.get("monitor") is not None and "script" not in changes:
                fields["script"] = None
            fields.update(changes)
            checked = _checked(fields)
            schedule = _schedule(fields, job.created_ms)
            parent = (
                self._parent(cur, job.name, job.id, schedule.after)
                if "after" in changes
                else schedule.after
            )
            now = self._now()
            updated = Job(
                id=job.id,
                name=job.name,
                schedule=JobSchedule(
                    schedule.cron,
                    schedule.timezone,
                    schedule.every_ms,
                    parent,
                    schedule.manual,
                    job.created_ms,
                ),
                paused=job.paused,
                builtin=job.builtin,
                created_ms=job.created_ms,
                updated_ms=now,
                **checked,
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
            self._db.exec(cur, f"DELETE FROM run_metrics WHERE run_id IN ({runs})", (job.id,))
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
    )
