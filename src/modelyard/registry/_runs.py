"""Runs of jobs, the slot claims that make each (job, slot) run at most once, and run metrics.

A slot claim is a row keyed by (job id, slot ms, attempt). The scheduler that inserts it owns
the slot until its lease ends; an INSERT that finds the key taken means another scheduler (or an
earlier life of this one) has it. A claim whose lease expired while its run never started may be
taken over by one conditional UPDATE, so two servers racing for it still get one winner. When a
run of the slot starts (``update_run(state='running')``) the claim records that run, in the same
transaction; from then on the claim is never taken over and no other run of the slot can start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.ids import new_crn
from modelyard.registry._db import Clock, Cursor, Db, format_ms
from modelyard.registry._jobs import find_job
from modelyard.specs.checks import check_text

__all__ = [
    "MAX_LEASE_MS",
    "MAX_LIST",
    "TRANSITIONS",
    "Run",
    "RunState",
    "Runs",
    "SlotClaim",
    "Trigger",
    "checked_ms",
    "find_run",
]

MAX_LEASE_MS = 86_400_000
MAX_LIST = 10_000
_RUN_CRN = "crn:modelyard:run/"
_COLUMNS = (
    "id, job_id, slot_ms, attempt, trigger, state, exit_code, queued_ms, started_ms, ended_ms, "
    "log_path, api_key_id, parent_run_id, code_digest"
)
_CLAIM_COLUMNS = (
    "job_id, slot_ms, attempt, owner, lease_until_ms, claimed_ms, started_ms, started_run_id"
)
_CLAIM_KEY = "job_id = ? AND slot_ms = ? AND attempt = ?"


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING)


class Trigger(StrEnum):
    """Why a run exists: its ``schedule`` slot came, a ``manual`` request, its ``parent`` job
    succeeded, a ``retry`` of a failed attempt, or a ``catch-up`` of a slot missed while no
    scheduler ran."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    PARENT = "parent"
    RETRY = "retry"
    CATCH_UP = "catch-up"


# The states a run may move to from each state; finished states are final.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.CANCELLED}),
    RunState.RUNNING: frozenset(
        {RunState.SUCCEEDED, RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED}
    ),
}


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt at one slot of a job. ``slot_ms`` is the scheduled time (now, for a manual
    run); ``api_key_id`` the run's scoped key (revoked when it ends); ``parent_run_id`` the
    parent's run that started a dependent job's run."""

    id: str
    job_id: str
    slot_ms: int
    attempt: int
    trigger: Trigger
    state: RunState
    exit_code: int | None
    queued_ms: int
    started_ms: int | None
    ended_ms: int | None
    log_path: str | None
    api_key_id: str | None
    parent_run_id: str | None
    code_digest: str | None = None  # the snapshot an experiment run executed (its code version)

    @property
    def duration_ms(self) -> int | None:
        """From start to end; None until the run has both."""
        if self.started_ms is None or self.ended_ms is None:
            return None
        return self.ended_ms - self.started_ms


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """Who holds (job, slot, attempt) until when, and which run started on it (None: none yet,
    so after ``lease_until_ms`` another scheduler may take the slot over)."""

    job_id: str
    slot_ms: int
    attempt: int
    owner: str
    lease_until_ms: int
    claimed_ms: int
    started_ms: int | None
    started_run_id: str | None


def _run(row: Any) -> Run:
    return Run(
        id=row[0],
        job_id=row[1],
        slot_ms=int(row[2]),
        attempt=int(row[3]),
        trigger=Trigger(row[4]),
        state=RunState(row[5]),
        exit_code=None if row[6] is None else int(row[6]),
        queued_ms=int(row[7]),
        started_ms=None if row[8] is None else int(row[8]),
        ended_ms=None if row[9] is None else int(row[9]),
        log_path=row[10],
        api_key_id=row[11],
        parent_run_id=row[12],
        code_digest=row[13],
    )


def _claim(row: Any) -> SlotClaim:
    return SlotClaim(
        job_id=row[0],
        slot_ms=int(row[1]),
        attempt=int(row[2]),
        owner=row[3],
        lease_until_ms=int(row[4]),
        claimed_ms=int(row[5]),
        started_ms=None if row[6] is None else int(row[6]),
        started_run_id=row[7],
    )


def checked_ms(argument: str, value: object, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 62:
        extra = " or None" if optional else ""
        raise InvalidInput(
            f"{argument}={value!r} is not accepted; expected epoch milliseconds (an integer "
            f">= 0){extra}",
            argument=argument,
        )
    return value


def _positive(argument: str, value: object, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidInput(
            f"{argument}={value!r} is not accepted; expected an integer from 1 to {high}",
            argument=argument,
        )
    return value


def _state(value: object) -> RunState:
    if isinstance(value, str) and value in {s.value for s in RunState}:
        return RunState(value)
    raise InvalidInput(
        f"run state {value!r} is not accepted; accepted: {', '.join(s.value for s in RunState)}",
        argument="state",
    )


def _trigger(value: object) -> Trigger:
    if isinstance(value, str) and value in {t.value for t in Trigger}:
        return Trigger(value)
    raise InvalidInput(
        f"trigger={value!r} is not accepted; accepted: {', '.join(t.value for t in Trigger)}",
        argument="trigger",
    )


def find_run(db: Db, cur: Cursor, run_id: object, *, lock: bool = False) -> Run:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput(
            f"run {run_id!r} is not accepted; expected a run id 'crn:modelyard:run/<uuid>'",
            run=repr(run_id),
        )
    tail = db.for_update if lock else ""
    row = db.exec(cur, f"SELECT {_COLUMNS} FROM job_runs WHERE id = ?{tail}", (run_id,)).fetchone()
    if row is None:
        raise NotFound(
            f"run {run_id!r} does not exist (runs older than the run-history retention are "
            "deleted); list_runs(job) shows a job's runs",
            run=run_id,
        )
    return _run(row)


class Runs:
    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    # -- runs ------------------------------------------------------------------------------------
    def create(
        self, job_ref: str, slot_ms: int, attempt: int, trigger: str, parent_run_id: str | None
    ) -> Run:
        slot_ms = checked_ms("slot_ms", slot_ms)
        chosen = _trigger(trigger)

        def insert(cur: Cursor) -> Run:
            job = find_job(self._db, cur, job_ref)
            _positive("attempt", attempt, job.retries + 1)
            if parent_run_id is not None:
                find_run(self._db, cur, parent_run_id)
            run = Run(
                id=new_crn("run"),
                job_id=job.id,
                slot_ms=slot_ms,
                attempt=attempt,
                trigger=chosen,
                state=RunState.QUEUED,
                exit_code=None,
                queued_ms=self._now(),
                started_ms=None,
                ended_ms=None,
                log_path=None,
                api_key_id=None,
                parent_run_id=parent_run_id,
            )
            self._db.exec(
                cur,
                f"INSERT INTO job_runs ({_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                (
                    run.id,
                    run.job_id,
                    run.slot_ms,
                    run.attempt,
                    run.trigger.value,
                    run.state.value,
                    None,
                    run.queued_ms,
                    None,
                    None,
                    None,
                    None,
                    run.parent_run_id,
                    None,
                ),
            )
            return run

        return self._db.write(insert)

    def update(
        self,
        run_id: str,
        *,
        state: str | None,
        exit_code: int | None,
        started_ms: int | None,
        ended_ms: int | None,
        log_path: str | None,
        api_key_id: str | None,
    ) -> Run:
        new_state = None if state is None else _state(state)
        if exit_code is not None and (
            isinstance(exit_code, bool) or not isinstance(exit_code, int)
        ):
            raise InvalidInput(
                f"exit_code={exit_code!r} is not accepted; expected an integer or None",
                argument="exit_code",
            )
        started_ms = checked_ms("started_ms", started_ms, optional=True)
        ended_ms = checked_ms("ended_ms", ended_ms, optional=True)
        log_path = check_text("log_path", log_path, max_len=4096, optional=True)
        api_key_id = check_text("api_key_id", api_key_id, optional=True)

        def update(cur: Cursor) -> Run:
            run = find_run(self._db, cur, run_id, lock=True)
            now = self._now()
            changes: dict[str, Any] = {}
            if new_state is not None and new_state is not run.state:
                allowed = TRANSITIONS.get(run.state, frozenset())
                if new_state not in allowed:
                    accepted = (
                        f"accepted from {run.state.value}: "
                        f"{', '.join(s.value for s in RunState if s in allowed)}"
                        if allowed
                        else f"{run.state.value} is final"
                    )
                    raise InvalidInput(
                        f"run {run.id} cannot go from {run.state.value} to {new_state.value}; "
                        f"{accepted}",
                        run=run.id,
                        state=new_state.value,
                    )
                changes["state"] = new_state.value
                if new_state is RunState.RUNNING:
                    changes["started_ms"] = now if started_ms is None else started_ms
                    self._start_slot(cur, run, changes["started_ms"])
                elif new_state.finished:
                    changes["ended_ms"] = now if ended_ms is None else ended_ms
            for name, value in (
                ("exit_code", exit_code),
                ("started_ms", started_ms),
                ("ended_ms", ended_ms),
                ("log_path", log_path),
                ("api_key_id", api_key_id),
            ):
                if value is not None:
                    changes[name] = value
            if not changes:
                return run
            self._db.exec(
                cur,
                f"UPDATE job_runs SET {', '.join(f'{k} = ?' for k in changes)} WHERE id = ?",
                (*changes.values(), run.id),
            )
            return find_run(self._db, cur, run.id)

        return self._db.write(update)

    def _start_slot(self, cur: Cursor, run: Run, started_ms: int) -> None:
        """Record on the slot's claim (if there is one) that ``run`` started; Conflict if
        another run of the slot started first: a slot never runs twice."""
        key = (run.job_id, run.slot_ms, run.attempt)
        marked = self._db.exec(
            cur,
            f"UPDATE job_slots SET started_ms = ?, started_run_id = ? WHERE {_CLAIM_KEY} "
            "AND started_ms IS NULL",
            (started_ms, run.id, *key),
        ).rowcount
        if marked == 1:
            return
        row = self._db.exec(
            cur, f"SELECT started_run_id FROM job_slots WHERE {_CLAIM_KEY}", key
        ).fetchone()
        if row is not None and row[0] != run.id:
            raise Conflict(
                f"run {run.id} cannot start: slot {format_ms(run.slot_ms)} (attempt "
                f"{run.attempt}) of its job already started as run {row[0]}, and a slot runs at "
                "most once; cancel this run",
                run=run.id,
                started_run_id=row[0],
            )

    def get(self, run_id: str) -> Run:
        with self._db.read() as cur:
            return find_run(self._db, cur, run_id)

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Ids of the runs whose uuid starts with ``prefix`` (checked by ``check_prefix``: hex
        digits and hyphens only, so no LIKE wildcard), in id order, at most ``limit``."""
        limit = _positive("limit", limit, MAX_LIST)
        with self._db.read() as cur:
            rows = self._db.exec(
                cur,
                "SELECT id FROM job_runs WHERE id LIKE ? ORDER BY id LIMIT ?",
                (f"{_RUN_CRN}{prefix}%", limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def select(
        self,
        job: str | None,
        states: Iterable[str] | None,
        limit: int,
        before_ms: int | None,
    ) -> list[Run]:
        limit = _positive("limit", limit, MAX_LIST)
        before_ms = checked_ms("before_ms", before_ms, optional=True)
        chosen = None if states is None else sorted({_state(s).value for s in _listed(states)})
        where: list[str] = []
        params: list[Any] = []
        with self._db.read() as cur:
            if job is not None:
                where.append("job_id = ?")
                params.append(find_job(self._db, cur, job).id)
            if chosen is not None:
                if not chosen:
                    return []
                where.append(f"state IN ({', '.join('?' * len(chosen))})")
                params.extend(chosen)
            if before_ms is not None:
                where.append("queued_ms < ?")
                params.append(before_ms)
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            rows = self._db.exec(
                cur,
                f"SELECT {_COLUMNS} FROM job_runs{clause} ORDER BY queued_ms DESC, seq DESC "
                "LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_run(row) for row in rows]

    def running(self, job_ref: str) -> list[Run]:
        with self._db.read() as cur:
            job = find_job(self._db, cur, job_ref)
            rows = self._db.exec(
                cur,
                f"SELECT {_COLUMNS} FROM job_runs WHERE job_id = ? AND state = ? ORDER BY seq",
                (job.id, RunState.RUNNING.value),
            ).fetchall()
        return [_run(row) for row in rows]

    def prune(self, older_than_ms: int) -> list[Run]:
        older_than_ms = checked_ms("older_than_ms", older_than_ms)
        finished = [s.value for s in RunState if s.finished]

        def prune(cur: Cursor) -> list[Run]:
            marks = ", ".join("?" * len(finished))
            condition = f"state IN ({marks}) AND ended_ms < ?"
            rows = self._db.exec(
                cur,
                f"SELECT {_COLUMNS} FROM job_runs WHERE {condition} ORDER BY seq",
                (*finished, older_than_ms),
            ).fetchall()
            for table in ("run_metrics", "run_files"):
                self._db.exec(
                    cur,
                    f"DELETE FROM {table} WHERE run_id IN (SELECT id FROM job_runs WHERE "
                    f"{condition})",
                    (*finished, older_than_ms),
                )
            self._db.exec(
                cur, f"DELETE FROM job_runs WHERE {condition}", (*finished, older_than_ms)
            )
            # Old claims go too, except each job's last scheduled slot: the scheduler counts
            # missed slots from it, and without it would see the job's whole history as missed.
            for (job_id,) in self._db.exec(cur, "SELECT id FROM jobs").fetchall():
                last = self._last_slot(cur, job_id)
                bound = older_than_ms if last is None else min(older_than_ms, last)
                self._db.exec(
                    cur, "DELETE FROM job_slots WHERE job_id = ? AND slot_ms < ?", (job_id, bound)
                )
            return [_run(row) for row in rows]

        return self._db.write(prune)

    # -- slot claims -----------------------------------------------------------------------------
    def claim(self, job_ref: str, slot_ms: int, attempt: int, owner: str, lease_ms: int) -> bool:
        slot_ms = checked_ms("slot_ms", slot_ms)
        attempt = _positive("attempt", attempt, 1_000)
        owner = check_text("owner", owner, max_len=200)
        lease_ms = _positive("lease_ms", lease_ms, MAX_LEASE_MS)

        def claim(cur: Cursor) -> bool:
            job_id = self._job_id(cur, job_ref)
            now = self._now()
            key = (job_id, slot_ms, attempt)
            inserted = self._db.exec(
                cur,
                f"INSERT INTO job_slots ({_CLAIM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL) "
                "ON CONFLICT (job_id, slot_ms, attempt) DO NOTHING",
                (*key, owner, now + lease_ms, now),
            ).rowcount
            if inserted == 1:
                return True
            # Taken: only an expired claim whose run never started changes hands, and the
            # condition is re-checked on the row by the UPDATE itself, so one racer wins.
            taken = self._db.exec(
                cur,
                "UPDATE job_slots SET owner = ?, lease_until_ms = ?, claimed_ms = ? "
                f"WHERE {_CLAIM_KEY} AND lease_until_ms <= ? AND started_ms IS NULL",
                (owner, now + lease_ms, now, *key, now),
            ).rowcount
            return bool(taken == 1)

        return self._db.write(claim)

    def renew(self, job_ref: str, slot_ms: int, attempt: int, owner: str, lease_ms: int) -> bool:
        slot_ms = checked_ms("slot_ms", slot_ms)
        owner = check_text("owner", owner, max_len=200)
        lease_ms = _positive("lease_ms", lease_ms, MAX_LEASE_MS)

        def renew(cur: Cursor) -> bool:
            job_id = self._job_id(cur, job_ref)
            renewed = self._db.exec(
                cur,
                f"UPDATE job_slots SET lease_until_ms = ? WHERE {_CLAIM_KEY} AND owner = ?",
                (self._now() + lease_ms, job_id, slot_ms, attempt, owner),
            ).rowcount
            return bool(renewed == 1)

        return self._db.write(renew)

    def claim_of(self, job_ref: str, slot_ms: int, attempt: int) -> SlotClaim | None:
        with self._db.read() as cur:
            job_id = self._job_id(cur, job_ref)
            row = self._db.exec(
                cur,
                f"SELECT {_CLAIM_COLUMNS} FROM job_slots WHERE {_CLAIM_KEY}",
                (job_id, slot_ms, attempt),
            ).fetchone()
        return None if row is None else _claim(row)

    def last_slot(self, job_ref: str) -> int | None:
        with self._db.read() as cur:
            return self._last_slot(cur, self._job_id(cur, job_ref))

    def _last_slot(self, cur: Cursor, job_id: str) -> int | None:
        """The latest first-attempt slot claimed for the job, manual runs left out: a run-now
        request claims the current time, and counting it would hide scheduled slots before it
        that the scheduler has not reached yet."""
        # Newest first along the claims' primary key, stopping at the first hit: the scheduler
        # asks this for every job on every tick, and a minutely job keeps 43,200 claims a month.
        row = self._db.exec(
            cur,
            "SELECT s.slot_ms FROM job_slots s WHERE s.job_id = ? AND s.attempt = 1 "
            "AND NOT EXISTS (SELECT 1 FROM job_runs r WHERE r.job_id = s.job_id "
            "AND r.slot_ms = s.slot_ms AND r.attempt = 1 AND r.trigger = ?) "
            "ORDER BY s.slot_ms DESC LIMIT 1",
            (job_id, Trigger.MANUAL.value),
        ).fetchone()
        return None if row is None else int(row[0])

    def _job_id(self, cur: Cursor, job_ref: str) -> str:
        return find_job(self._db, cur, job_ref).id


def _listed(states: Iterable[str]) -> Iterable[str]:
    if isinstance(states, str):
        raise InvalidInput(
            f"states={states!r} is not accepted; expected a list of states such as "
            "['queued', 'running']",
            argument="states",
        )
    return states
