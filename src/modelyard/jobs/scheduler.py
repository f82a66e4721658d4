"""The scheduler: which (job, slot) is due, claim it, hand it to the runner.

It is one thread (simple to start from a uvicorn lifespan or a CLI and to stop cleanly with
``stop()``), waking every ``tick_s``. On each tick, for every unpaused job with a cron or interval
schedule, ``schedule.due_slots`` says which slots are due since the job's last slot, following the
job's catch-up policy (what to do with slots missed while no server ran). Each due slot is
claimed in the database (``registry.claim_slot``: an insert keyed by (job, slot, attempt), with a
lease), so a slot runs at most once across restarts and across servers on one database; the
scheduler that wins the claim records the run and hands it to the runner.

Overlap, when a run of the job is still going:

- ``skip``: the slot is claimed and recorded as a ``cancelled`` run whose log says it was skipped
  and which run was still going, so the history shows every slot and nothing runs twice at once.
  No notification is sent for a skipped slot.
- ``queue``: the run is recorded ``queued`` and starts when this server's previous run of the job
  ends.
- ``allow``: it starts at once.

Dependent jobs: when a run ends ``succeeded``, each unpaused child job gets a run on the parent's
slot (trigger ``parent``), claimed the same way; a failed, timed-out or cancelled parent starts no
child.

A server that crashed leaves runs ``running`` in the database. ``start()``, and then every half
lease, marks each such run of an earlier life of this owner (or whose claim lease expired: its
server stopped renewing it) that this process is not carrying out as ``failed``, with the reason
in its log, so nothing stays running forever.
"""

from __future__ import annotations

import hashlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelyard.clock import now_ms
from modelyard.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from modelyard.jobs import builtin
from modelyard.jobs.notify import Notifier
from modelyard.jobs.run_files import sweep_workdirs
from modelyard.jobs.runner import Runner, run_uuid
from modelyard.registry import Job, Overlap, Registry, Run, RunState, Trigger
from modelyard.runtime import Runtime
from modelyard.specs.schedule import due_slots

__all__ = ["DEFAULT_LEASE_MS", "Scheduler", "default_owner"]

log = logging.getLogger(__name__)

# How long a claim holds before another scheduler may take over a slot whose run never started;
# renewed while the run goes on, so it is also how soon a crashed server's runs are seen as gone.
DEFAULT_LEASE_MS = 60_000
# A due slot further in the past than this is a catch-up (missed while no scheduler ran), not a
# slot served on time.
_LATE_MS = 10_000


def default_owner(home: str | Path) -> str:
    """A name that is stable across restarts of the server using ``home`` on this host, and
    differs between servers with different homes or hosts."""
    digest = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:12]
    return f"{socket.gethostname()[:100]}:{digest}"


class Scheduler:
    """Runs jobs on schedule inside a server; see the module docstring.

    ``owner`` names this scheduler in slot claims; a restarted server should pass the same owner
    so its own leftover runs are recognised at once, two servers need two owners. ``clock``
    (epoch ms) is injectable so tests can simulate downtime. ``notifier`` defaults to one reading
    the SMTP settings; ``link`` builds the ``link`` of notifications from a run.
    """

    def __init__(  # noqa: PLR0913 the parts a scheduler works with and its knobs, keyword-only
        self,
        registry: Registry,
        runtime: Runtime,
        store: Any,
        *,
        home: str | Path,
        server_url: str | None,
        owner: str,
        tick_s: float = 0.5,
        clock: Callable[[], int] = now_ms,
        lease_ms: int = DEFAULT_LEASE_MS,
        notifier: Notifier | None = None,
        builtin_jobs: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(owner, str) or not owner.strip():
            raise InvalidInput(
                f"owner={owner!r} is not accepted; a scheduler needs a non-empty name, stable "
                "across restarts of one server and different for each server (e.g. host:port)"
            )
        self.registry = registry
        self.runtime = runtime
        self.store = store
        self.home = Path(home)
        self.server_url = server_url.rstrip("/") if server_url else None
        self.owner = owner
        self.tick_s = tick_s
        self.lease_ms = lease_ms
        self._clock = clock
        self._builtin_jobs = builtin_jobs
        self._own_notifier = notifier is None
        self.notifier = notifier if notifier is not None else Notifier()
        self.runner = Runner(
            registry,
            runtime,
            store,
            home=self.home,
            server_url=self.server_url,
            notifier=self.notifier,
            claim=self._claim,
            on_finished=self._finished,
            builtins=builtin.BUILTINS,
            link=self._link,
            clock=clock,
            rng=rng,
        )
        self._stop = threading.Event()
        self._tick_lock = threading.Lock()
        self._life_started_ms = clock()
        self._renewed: dict[str, int] = {}
        self._recovered_ms = self._life_started_ms
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Recover leftover runs, create the built-in jobs, start ticking."""
        if self._thread is not None:
            return
        if self._stop.is_set():
            raise Conflict(
                f"scheduler {self.owner} was stopped and cannot start again (its runner is "
                "closed); create a new Scheduler over the same registry instead"
            )
        self.recover()
        if self._builtin_jobs:
            builtin.ensure_builtin_jobs(self.registry, self.home)
        self._thread = threading.Thread(target=self._loop, name="modelyard-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop ticking, cancel this scheduler's runs and wait for their records."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.runner.close(timeout_s)
        if self._own_notifier:
            self.notifier.close()

    def _loop(self) -> None:
        store_down = False
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
                store_down = False
            except StoreUnavailable as exc:  # one line per outage, not a traceback per tick
                if not store_down:
                    log.warning("scheduler ticks wait for the store to answer again: %s", exc)
                store_down = True
            except Exception:  # a bad job or a database hiccup must not end scheduling
                log.exception("scheduler tick failed")

    # -- one tick ----------------------------------------------------------------------------

    def tick(self) -> list[Run]:
        """One pass over the jobs; returns the runs it recorded (started, queued or skipped)."""
        with self._tick_lock:
            now = self._clock()
            self._renew_leases(now)
            if now - self._recovered_ms >= self.lease_ms // 2:
                # Not only at start: runs of a server that died and never came back end too.
                self.recover()
            recorded: list[Run] = []
            for job in self.registry.list_jobs():
                if job.paused or self._stop.is_set():
                    continue
                if not job.schedule.timed:
                    continue  # dependent and manual jobs are started by events, not time
                try:
                    recorded += self._due(job, now)
                except Exception:  # one job's trouble (deleted meanwhile...) spares the others
                    log.exception("scheduling job %s failed on this tick", job.name)
            return recorded

    def _due(self, job: Job, now: int) -> list[Run]:
        recorded = []
        last = self.registry.last_slot(job.id)
        backlog = False
        for slot in due_slots(job.schedule, last, now, job.catch_up):
            trigger = Trigger.CATCH_UP if now - slot > _LATE_MS else Trigger.SCHEDULE
            run = self._submit(job, slot, trigger, backlog=backlog)
            if run is not None:
                recorded.append(run)
                # Missed slots caught up together are a backlog, not an overlap: with skip they
                # run one after another behind the first (unless it was skipped itself), not
                # side by side and not skipped.
                backlog = run.state != RunState.CANCELLED
        return recorded

    def _submit(
        self,
        job: Job,
        slot_ms: int,
        trigger: Trigger,
        parent_run_id: str | None = None,
        *,
        backlog: bool = False,
    ) -> Run | None:
        """Claim (job, slot) and record and start (or queue, or skip) its run; None if another
        scheduler, or an earlier life of this one, has the slot. ``backlog``: a further slot of
        one catch-up, queued behind the previous one under ``skip`` and ``queue``."""
        busy = self.runner.busy_with(job.id) or bool(self.registry.running_runs(job.id))
        if not self._claim(job, slot_ms, 1):
            return None
        run = self.registry.create_run(job.id, slot_ms, 1, trigger, parent_run_id=parent_run_id)
        if busy and job.overlap == Overlap.SKIP and not backlog:
            return self._skip(job, run)
        if job.overlap == Overlap.QUEUE or (backlog and job.overlap == Overlap.SKIP):
            self.runner.enqueue(job, run)
        else:
            self.runner.start(job, run)
        return run

    def _skip(self, job: Job, run: Run) -> Run:
        going = [r.id for r in self.registry.running_runs(job.id)]
        going += [r for r in self.runner.active_runs() if r not in going and r != run.id]
        reason = (
            f"slot skipped (overlap=skip): a run of job {job.name} was still going "
            f"({', '.join(going) or 'starting'})"
        )
        log.info("job %s: %s", job.name, reason)
        path = self.home / "logs" / "runs" / f"{run_uuid(run.id)}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"[modelyard] {reason}\n")
        now = self._clock()
        return self.registry.update_run(
            run.id, state=RunState.CANCELLED, started_ms=now, ended_ms=now, log_path=str(path)
        )

    def _claim(self, job: Job, slot_ms: int, attempt: int) -> bool:
        return self.registry.claim_slot(job.id, slot_ms, attempt, self.owner, self.lease_ms)

    def _renew_leases(self, now: int) -> None:
        """Keep the claims of this scheduler's runs alive (a third into each lease), so other
        schedulers do not take them for a dead server's."""
        held = self.runner.held_runs()
        for run_id in list(self._renewed):
            if run_id not in held:
                del self._renewed[run_id]
        for run_id in held:
            last = self._renewed.setdefault(run_id, now)
            if now - last < self.lease_ms // 3:
                continue
            self._renewed[run_id] = now
            try:
                run = self.registry.get_run(run_id)
                self.registry.renew_claim(
                    run.job_id, run.slot_ms, run.attempt, self.owner, self.lease_ms
                )
            except NotFound:
                continue

    def _finished(self, job: Job, run: Run) -> None:
        """A run ended: start the children of a succeeded run on the parent's slot."""
        if run.state != RunState.SUCCEEDED:
            return
        for child in self.registry.children_of(job.id):
            if child.paused:
                log.info("child job %s of %s is paused: not started", child.name, job.name)
                continue
            self._submit(child, run.slot_ms, Trigger.PARENT, parent_run_id=run.id)

    def _link(self, run: Run) -> str | None:
        if self.server_url is None:
            return None
        return f"{self.server_url}/api/v1/runs/{run_uuid(run.id)}"

    # -- what the API calls ------------------------------------------------------------------

    def trigger(self, job_name: str) -> Run:
        """Run a job now (trigger ``manual``), on a slot of the current time.

        Overlap applies: with ``skip`` a job that has a run going refuses with Conflict (nothing
        is recorded), ``queue`` queues it, ``allow`` starts it.
        """
        job = self.registry.get_job(job_name)
        busy = self.runner.busy_with(job.id) or bool(self.registry.running_runs(job.id))
        if busy and job.overlap == Overlap.SKIP:
            raise Conflict(
                f"job {job.name!r} has a run going and its overlap policy is 'skip'; wait for it, "
                "cancel it, or set --overlap queue|allow",
                job=job.name,
            )
        slot = self._clock()
        # Two run-now requests in one millisecond: the second takes the next free millisecond.
        while not self._claim(job, slot, 1):
            slot += 1
        run = self.registry.create_run(job.id, slot, 1, Trigger.MANUAL)
        if job.overlap == Overlap.QUEUE:
            self.runner.enqueue(job, run)
        else:
            self.runner.start(job, run)
        return run

    def cancel(self, run_id: str, wait_s: float = 30.0) -> Run:
        """Cancel a queued or running run of this scheduler; returns its record once final
        (or after ``wait_s``). Conflict for a run that already ended or runs elsewhere."""
        run = self.registry.get_run(run_id)
        if not self.runner.cancel(run.id):
            if run.state in (RunState.RUNNING, RunState.QUEUED):
                raise Conflict(
                    f"run {run.id} is {run.state} but not carried out by this server "
                    f"({self.owner}); cancel it on the server that runs it",
                    run=run.id,
                )
            raise Conflict(
                f"run {run.id} already ended ({run.state}); only queued or running runs can be "
                "cancelled",
                run=run.id,
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            run = self.registry.get_run(run.id)
            if run.state not in (RunState.RUNNING, RunState.QUEUED):
                break
            time.sleep(0.02)
        return run

    # -- after a crash -----------------------------------------------------------------------

    def recover(self) -> list[Run]:
        """Mark runs left ``running`` by a dead server ``failed`` (``queued`` ones ``cancelled``).

        Called at start and then every half lease. A run counts as left over when this process
        is not carrying it out and either its claim belongs to this owner but was made before
        this scheduler was created (an earlier life of this server) or its claim lease expired
        (its server stopped renewing it). Each gets a line in its log saying why.
        """
        now = self._clock()
        self._recovered_ms = now
        marked = []
        leftover = self.registry.list_runs(states=[RunState.RUNNING, RunState.QUEUED], limit=10_000)
        for run in leftover:
            if self.runner.is_active(run.id):
                continue
            claim = self.registry.slot_claim(run.job_id, run.slot_ms, run.attempt)
            if claim is not None and claim.owner != self.owner and claim.lease_until_ms > now:
                continue  # another live server runs it
            if (
                claim is not None
                and claim.owner == self.owner
                and claim.claimed_ms >= self._life_started_ms
            ):
                continue  # claimed in this life and about to be handed to the runner
            reason = (
                f"run marked {'failed' if run.state == RunState.RUNNING else 'cancelled'} by "
                f"scheduler {self.owner}: its process is gone "
                f"(the server that ran it, {claim.owner if claim else 'unknown'}, stopped)"
            )
            if run.log_path:
                try:
                    with open(run.log_path, "a", encoding="utf-8") as out:
                        out.write(f"[modelyard] {reason}\n")
                except OSError:
                    pass
            log.warning("%s: %s", run.id, reason)
            # A queued run never started: it can only be cancelled (the registry's transitions).
            final = RunState.FAILED if run.state == RunState.RUNNING else RunState.CANCELLED
            marked.append(self.registry.update_run(run.id, state=final, ended_ms=now))
        # Experiment runs' working folders a crash left here: their files kept, then removed.
        sweep_workdirs(self.registry, self.runner.home, self.runner.is_active)
        return marked
