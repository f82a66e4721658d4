"""One run's lifecycle: prepare, launch, wait, record, retry, notify.

A run the scheduler claimed and recorded (state ``queued``) is handed to ``Runner.start``, which
carries it out on a thread of its own:

1. prepare: snapshot the job's project (``builds.snapshot_project``, content-addressed, shared
   with model builds) and its environment (``builds.ensure_environment`` for the job's
   ``requirements`` file if it names one, else the base interpreter);
2. mint a ``run``-role API key scoped to the run, expiring at the timeout plus a margin;
3. launch ``[python, script, *args]`` (a monitor job: ``[python, -m, modelyard.monitors, run,
   spec, *args]``, the runner from the installed package, so no launcher file has to be in the
   project) in the snapshot through the runtime, with
   ``MODELYARD_URL``, ``MODELYARD_API_KEY``, ``MODELYARD_JOB``, ``MODELYARD_RUN_ID`` and
   ``MODELYARD_SCHEDULED_AT`` on top of the job's env; wait with the job's timeout (the runtime
   kills the whole process group on timeout or cancel);
4. revoke the key (in a ``finally``: a run that ends in any way leaves no working key), record
   state, exit code, times and log path, and move the metrics the run tracked into the registry;
5. notify per ``notify_on``; a failed or timed-out run with attempts left is retried after an
   exponential back-off with jitter, as a new run (attempt n+1, trigger ``retry``) on a newly
   claimed slot; a cancelled run is never retried;
6. tell the scheduler (``on_finished``) so it can start dependent jobs.

An experiment run (a job of kind ``experiment``) runs in a writable copy of the snapshot and
keeps the files it tracked when its process ends (``jobs.run_files``).

Built-in maintenance jobs run in-process (``builtin.BUILTINS``) on the same path, with their
output written to the run log.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from modelyard.backoff import Backoff
from modelyard.builds import ensure_environment, snapshot_project
from modelyard.clock import now_ms
from modelyard.errors import ModelyardError, NotFound
from modelyard.jobs.connection_secrets import connection_secrets
from modelyard.jobs.current import format_slot
from modelyard.jobs.notify import NOTIFY_EVENTS, Notifier, log_tail
from modelyard.jobs.run_files import (
    EXPERIMENT_KIND,
    experiment_env,
    finish_experiment,
    start_experiment,
)
from modelyard.registry import Job, Registry, Run, RunState, Trigger, read_secrets
from modelyard.runtime import RunHandle, RunSpec, RunStatus, Runtime
from modelyard.runtime.logs import run_log_path

__all__ = [
    "KEY_MARGIN_MS",
    "MONITOR_MODULE",
    "RETRY_CAP_MS",
    "BuiltinFn",
    "Runner",
    "retry_delay_ms",
    "run_uuid",
]

log = logging.getLogger(__name__)

# A run's key outlives its timeout by this much, so a run killed at its deadline still had a
# working key until the end; the key is revoked as soon as the run ends anyway.
KEY_MARGIN_MS = 5 * 60_000
# What a monitor job runs with ``python -m``: the monitor runner of the installed package.
MONITOR_MODULE = "modelyard.monitors"
# Back-off between retries doubles per attempt up to this.
RETRY_CAP_MS = 6 * 3_600_000

# An in-process job: gets the store-facing context and a text log; raises to fail the run.
BuiltinFn = Callable[["BuiltinContext"], None]

_FINAL = {
    RunStatus.SUCCEEDED: RunState.SUCCEEDED,
    RunStatus.FAILED: RunState.FAILED,
    RunStatus.TIMED_OUT: RunState.TIMED_OUT,
    RunStatus.CANCELLED: RunState.CANCELLED,
}


def run_uuid(run_id: str) -> str:
    """The uuid part of ``crn:modelyard:run/<uuid>``: what names the run's log and process."""
    return run_id.rsplit("/", 1)[-1]


def retry_delay_ms(backoff_ms: int, attempt: int, rng: random.Random) -> int:
    """Wait before retrying after ``attempt`` failed: ``backoff_ms * 2**(attempt-1)``, capped at
    ``RETRY_CAP_MS``, shaken by +-20 % so jobs that failed together do not retry in lockstep."""
    policy = Backoff(base_s=min(backoff_ms, RETRY_CAP_MS) / 1000, cap_s=RETRY_CAP_MS / 1000)
    return max(0, int(policy.delay(attempt, rng) * 1000))


@dataclass(frozen=True, slots=True)
class BuiltinContext:
    """What an in-process maintenance job gets: where things are and a log to write to."""

    registry: Registry
    store: Any
    home: Path
    now_ms: int
    log: IO[str]


class _Active:
    """One run this runner is carrying out (prepared, running, or waiting to retry)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.handle: RunHandle | None = None
        self.cancelled = threading.Event()


class Runner:
    """Carries out runs on threads; see the module docstring for the steps.

    ``claim`` is the scheduler's slot claim (``(job, slot_ms, attempt) -> bool``): retries claim
    their attempt the same way as scheduled slots, so a retry runs once even with two servers.
    ``on_finished(job, run)`` is called with every run's final record, after notifications were
    queued and before a retry starts.
    """

    def __init__(  # noqa: PLR0913 the parts a runner works with; keyword-only, one call site
        self,
        registry: Registry,
        runtime: Runtime,
        store: Any,
        *,
        home: Path,
        server_url: str | None,
        notifier: Notifier | None,
        claim: Callable[[Job, int, int], bool],
        on_finished: Callable[[Job, Run], None] | None = None,
        builtins: dict[str, BuiltinFn] | None = None,
        link: Callable[[Run], str | None] | None = None,
        clock: Callable[[], int] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.registry = registry
        self.runtime = runtime
        self.store = store
        self.home = Path(home)
        self.server_url = server_url
        self.notifier = notifier
        self._claim = claim
        self._on_finished = on_finished
        self._builtins = dict(builtins or {})
        self._link = link
        self._clock = clock or now_ms
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._active: dict[str, _Active] = {}
        self._threads: set[threading.Thread] = set()
        self._queued: dict[str, deque[Run]] = {}
        self._job_of: dict[str, str] = {}
        self._closing = threading.Event()

    # -- what the scheduler calls ----------------------------------------------------------

    def start(self, job: Job, run: Run) -> None:
        """Carry out ``run`` (already claimed and recorded) on a thread of its own; a run handed
        over while the runner closes is recorded ``cancelled``, never left ``queued``."""
        with self._lock:
            closing = self._closing.is_set()
            if not closing:
                self._active[run.id] = _Active(run.id)
                self._job_of[run.id] = job.id
                thread = threading.Thread(
                    target=self._carry_out,
                    args=(job, run),
                    name=f"modelyard-job-{run_uuid(run.id)}",
                    daemon=True,
                )
                self._threads.add(thread)
        if closing:
            self.registry.update_run(run.id, state=RunState.CANCELLED, ended_ms=self._clock())
            return
        thread.start()

    def enqueue(self, job: Job, run: Run) -> None:
        """Hold ``run`` (overlap ``queue``) until this runner has no other run of ``job``."""
        with self._lock:
            if job.id in self._job_of.values():
                self._queued.setdefault(job.id, deque()).append(run)
                return
        self.start(job, run)

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._active or any(
                r.id == run_id for q in self._queued.values() for r in q
            )

    def active_runs(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def held_runs(self) -> list[str]:
        """Runs this runner is responsible for: active ones and those queued behind them."""
        with self._lock:
            return list(self._active) + [r.id for q in self._queued.values() for r in q]

    def busy_with(self, job_id: str) -> bool:
        """True while this runner carries out or holds a run of ``job_id``."""
        with self._lock:
            return bool(self._queued.get(job_id)) or any(
                self._job_of.get(run_id) == job_id for run_id in self._active
            )

    def cancel(self, run_id: str) -> bool:
        """Cancel a run of this runner (True), or False when it has no such run."""
        with self._lock:
            active = self._active.get(run_id)
            held = None
            for job_id, waiting in self._queued.items():
                for run in waiting:
                    if run.id == run_id:
                        held = (job_id, run)
            if held is not None:
                self._queued[held[0]].remove(held[1])
        if held is not None:
            now = self._clock()
            self.registry.update_run(
                held[1].id, state=RunState.CANCELLED, started_ms=None, ended_ms=now
            )
            return True
        if active is None:
            return False
        active.cancelled.set()
        handle = active.handle
        if handle is not None:
            request = getattr(handle, "request_cancel", None)
            if request is not None:
                request()
            else:  # a RunHandle without the non-blocking form: cancel on a helper thread
                threading.Thread(target=handle.cancel, daemon=True).start()
        return True

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Block until no run is active or held (True), or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._active and not any(self._queued.values()):
                    return True
            time.sleep(0.02)
        return False

    def close(self, timeout_s: float = 30.0) -> None:
        """Cancel every run of this runner and wait (at most ``timeout_s``) for their records."""
        self._closing.set()
        with self._lock:
            ids = list(self._active)
            held = [run for waiting in self._queued.values() for run in waiting]
            self._queued.clear()
        now = self._clock()
        for run in held:
            self.registry.update_run(run.id, state=RunState.CANCELLED, ended_ms=now)
        for run_id in ids:
            self.cancel(run_id)
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- one run, start to end ---------------------------------------------------------------

    def _carry_out(self, job: Job, run: Run) -> None:
        current: Run | None = run
        try:
            while current is not None:
                final = self._one_attempt(job, current)
                following = self._after(job, final)
                with self._lock:
                    self._active.pop(current.id, None)
                    self._job_of.pop(current.id, None)
                    if following is not None:
                        self._active[following.id] = _Active(following.id)
                        self._job_of[following.id] = job.id
                current = following
        except Exception:
            log.exception("run %s of job %s failed in the runner", run.id, job.name)
        finally:
            with self._lock:
                if current is not None:
                    self._active.pop(current.id, None)
                    self._job_of.pop(current.id, None)
                self._threads.discard(threading.current_thread())
                waiting = self._queued.get(job.id)
                following = waiting.popleft() if waiting else None
            if following is not None and not self._closing.is_set():
                self.start(job, following)

    def _one_attempt(self, job: Job, run: Run) -> Run:
        active = self._active_of(run.id)
        path = run_log_path(self.home, run_uuid(run.id))
        path.parent.mkdir(parents=True, exist_ok=True)
        if job.builtin:
            return self._in_process(job, run, path)
        key_id: str | None = None
        started = self._clock()
        state = RunState.FAILED
        exit_code: int | None = None
        ended: int | None = None
        became_running = False
        try:
            with open(path, "a", encoding="utf-8") as note:
                # Conflict here means another run of this slot already started: this one ends
                # cancelled below, never running twice.
                self.registry.update_run(
                    run.id, state=RunState.RUNNING, started_ms=started, log_path=str(path)
                )
                became_running = True
                argv, cwd = self._prepare(job, run, note)
                key, token = self.registry.create_api_key(
                    f"run {run.id}",
                    role="run",
                    expires_in_ms=job.timeout_ms + KEY_MARGIN_MS,
                    scope=run.id,
                )
                key_id = key.id
                self.registry.update_run(run.id, state=RunState.RUNNING, api_key_id=key_id)
                _note(
                    note, f"attempt {run.attempt} ({run.trigger}), slot {format_slot(run.slot_ms)}"
                )
            if active is not None and active.cancelled.is_set():
                state = RunState.CANCELLED
            else:
                launched = self._launch(job, run, active, argv, cwd, token)
                state, started, ended, exit_code = launched
        except ModelyardError as exc:
            # A project that cannot be snapshotted, a missing script, an environment that cannot
            # be installed: the run fails with the reason in its log, the scheduler goes on.
            _append(path, f"run failed before it started: {exc.message}")
            state = RunState.CANCELLED if active and active.cancelled.is_set() else RunState.FAILED
        except Exception as exc:
            _append(path, f"run failed in the runner: {exc.__class__.__name__}: {exc}")
            log.exception("run %s of job %s", run.id, job.name)
        finally:
            if key_id is not None:
                try:
                    self.registry.revoke_api_key(key_id)
                except Exception:
                    log.exception("could not revoke the key of run %s", run.id)
            if job.kind == EXPERIMENT_KIND and became_running:  # its files, then no work folder
                try:
                    finish_experiment(self.registry, self.home, run, path)
                except Exception:
                    log.exception("could not collect the files of run %s", run.id)
        if not became_running:  # queued -> cancelled is the only way out that never ran
            return self.registry.update_run(
                run.id, state=RunState.CANCELLED, ended_ms=self._clock(), log_path=str(path)
            )
        return self.registry.update_run(
            run.id,
            state=state,
            exit_code=exit_code,
            started_ms=started,
            ended_ms=ended if ended is not None else self._clock(),
            log_path=str(path),
        )

    def _launch(
        self, job: Job, run: Run, active: _Active | None, argv: list[str], cwd: Path, token: str
    ) -> tuple[RunState, int, int, int | None]:
        """Launch the run's process and wait for it to end: its state, start and end (epoch
        ms) and exit code."""
        handle = self.runtime.launch_run(
            RunSpec(
                run_uuid(run.id),
                argv,
                cwd=cwd,
                env=self._env(job, run, token),
                timeout_s=job.timeout_ms / 1000,
                cpus=job.resources.get("cpus"),
                memory_bytes=job.resources.get("memory"),
                gpus=job.resources.get("gpus") or 0,
                accelerator=job.resources.get("accelerator"),
            )
        )
        if active is not None:
            active.handle = handle
            if active.cancelled.is_set():  # cancelled while launching
                self.cancel(run.id)
        launched = self._clock()
        status = handle.wait()
        # Times on the scheduler's clock (injectable), the duration measured by the runtime
        # around the process itself.
        ended = launched + (handle.duration_ms or 0)
        return _FINAL.get(status, RunState.FAILED), launched, ended, handle.exit_code

    def _prepare(self, job: Job, run: Run, note: IO[str]) -> tuple[list[str], Path]:
        builds = self.home / "builds"
        snap = snapshot_project(job.project, builds / "snapshots")
        _note(note, f"snapshot {snap.digest[:12]} of {job.project} ({len(snap.files)} files)")
        cwd = snap.path
        if job.monitor is not None:
            _inside(snap.path, job.monitor, "monitor")
            command = ["-m", MONITOR_MODULE, "run", job.monitor]  # relative to cwd, the snapshot
        else:
            command = [str(_inside(snap.path, job.script or "", "script"))]
            if job.kind == EXPERIMENT_KIND:  # a writable copy of the snapshot, its code recorded
                cwd = start_experiment(self.registry, self.home, run, snap.path, snap.digest, note)
                command = [str(cwd / (job.script or ""))]
        requirements = job.requirements
        req_path = None if not requirements else _inside(snap.path, requirements, "requirements")
        # The same environments as model builds: one per distinct requirements, reused.
        env = ensure_environment(req_path, builds / "envs", note, cwd=snap.path)
        return [str(env.python), *command, *job.args], cwd

    def _env(self, job: Job, run: Run, token: str) -> dict[str, str]:
        # The server's home, so a run tracking without a server (embedded) writes where the
        # runner collects run metrics; a job's own MODELYARD_HOME wins.
        env = {"MODELYARD_HOME": str(self.home), **job.env}
        # The project secrets the job names and those of the connections its monitor spec reads,
        # decrypted here and audited (names only); a missing one fails the run before it
        # starts, naming it in the run log (never a value).
        names = (*job.secrets, *connection_secrets(self.registry, job))
        secrets = read_secrets(self.registry, job.project_crn, names, object=job.name, for_=run.id)
        env.update(secrets)
        env.update(
            MODELYARD_API_KEY=token,
            MODELYARD_JOB=job.name,
            MODELYARD_RUN_ID=run_uuid(run.id),
            MODELYARD_SCHEDULED_AT=format_slot(run.slot_ms),
        )
        if self.server_url:
            env["MODELYARD_URL"] = self.server_url
        if job.kind == EXPERIMENT_KIND:
            env.update(experiment_env(job, self.home, run))
        if job.requirements:  # the Ray runtime installs them on its nodes (docs/ray.md)
            env["MODELYARD_BUILD_REQUIREMENTS"] = job.requirements
        return env

    def _in_process(self, job: Job, run: Run, path: Path) -> Run:
        """A built-in job: its function runs on this thread, its output goes to the run log."""
        fn = self._builtins.get(job.name)
        started = self._clock()
        self.registry.update_run(
            run.id, state=RunState.RUNNING, started_ms=started, log_path=str(path)
        )
        state = RunState.SUCCEEDED
        with open(path, "a", encoding="utf-8") as out:
            _note(out, f"built-in job {job.name}, attempt {run.attempt} ({run.trigger})")
            try:
                if fn is None:
                    raise NotFound(f"no built-in function for job {job.name!r}")
                fn(BuiltinContext(self.registry, self.store, self.home, started, out))
                _note(out, "done")
            except Exception as exc:
                state = RunState.FAILED
                _note(out, f"failed: {exc.__class__.__name__}: {exc}")
        return self.registry.update_run(
            run.id,
            state=state,
            exit_code=0 if state is RunState.SUCCEEDED else 1,
            started_ms=started,
            ended_ms=self._clock(),
            log_path=str(path),
        )

    def _collect_metrics(self, run: Run) -> int:
        """Move the metrics the run tracked (``track_metric`` inside a run appends them to
        ``<home>/runs/<uuid>/metrics.jsonl``, through the server or embedded) into the registry,
        where they are shown with the run. Returns how many entries were recorded."""
        path = self.home / "runs" / run_uuid(run.id) / "metrics.jsonl"
        if not path.is_file():
            return 0
        recorded = 0
        with open(path, "rb") as lines:
            for line in lines:
                try:
                    entry = orjson.loads(line)
                    self.registry.add_run_metrics(
                        run.id, entry["metrics"], int(entry.get("trackedMs") or self._clock())
                    )
                    recorded += 1
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    _append(
                        Path(run.log_path) if run.log_path else None,
                        f"run metric line skipped ({exc.__class__.__name__}: {exc})",
                    )
        path.unlink(missing_ok=True)
        return recorded

    def _after(self, job: Job, run: Run) -> Run | None:
        """Collect metrics, notify, tell the scheduler, and return the retry to carry out next
        (or None)."""
        try:
            self._collect_metrics(run)
        except Exception:
            log.exception("could not collect the metrics of run %s", run.id)
        self._notify(job, run)
        if self._on_finished is not None:
            try:
                self._on_finished(job, run)
            except Exception:
                log.exception("on_finished failed for run %s", run.id)
        # Timed-out runs count as failed for retries; cancelled ones are never retried.
        if run.state not in (RunState.FAILED, RunState.TIMED_OUT):
            return None
        if run.attempt > job.retries or self._closing.is_set():
            return None
        delay = retry_delay_ms(job.retry_backoff_ms, run.attempt, self._rng)
        _append(
            Path(run.log_path) if run.log_path else None,
            f"attempt {run.attempt} {run.state}: retry in {delay} ms",
        )
        # The failed run stays active while it waits, so a cancel of it also stops the retry.
        active = self._active_of(run.id)
        deadline = time.monotonic() + delay / 1000
        while time.monotonic() < deadline:
            if self._closing.is_set() or (active is not None and active.cancelled.is_set()):
                return None
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if self._closing.is_set() or (active is not None and active.cancelled.is_set()):
            return None
        try:
            current = self.registry.get_job(job.id)
        except NotFound:
            return None
        if current.paused:
            return None
        attempt = run.attempt + 1
        if not self._claim(current, run.slot_ms, attempt):
            return None
        return self.registry.create_run(
            current.id, run.slot_ms, attempt, Trigger.RETRY, parent_run_id=run.parent_run_id
        )

    def _notify(self, job: Job, run: Run) -> None:
        if self.notifier is None or not job.notify:
            return
        states = set().union(*(NOTIFY_EVENTS.get(word, frozenset()) for word in job.notify_on))
        if str(run.state) not in states:
            return
        self.notifier.send(job.notify, self.summary(job, run))

    def summary(self, job: Job, run: Run) -> dict[str, Any]:
        """The JSON body of a notification (see ``docs/jobs.md``)."""
        started, ended = run.started_ms, run.ended_ms
        return {
            "job": job.name,
            "run": run.id,
            "state": str(run.state),
            "attempt": run.attempt,
            "trigger": str(run.trigger),
            "exit_code": run.exit_code,
            "duration_ms": None if started is None or ended is None else ended - started,
            "scheduled_at": format_slot(run.slot_ms),
            "started_at": None if started is None else format_slot(started),
            "ended_at": None if ended is None else format_slot(ended),
            "log_tail": log_tail(run.log_path),
            "link": self._link(run) if self._link is not None else None,
        }

    def _active_of(self, run_id: str) -> _Active | None:
        with self._lock:
            return self._active.get(run_id)


def _inside(snapshot: Path, rel: str, argument: str) -> Path:
    full = snapshot / rel
    resolved = full.resolve()
    if not resolved.is_relative_to(snapshot.resolve()) or not resolved.is_file():
        raise NotFound(
            f"{argument}={rel!r} is not a file in the project snapshot {snapshot.name[:12]}: it is "
            "missing, a folder, or excluded by .gitignore/.modelyardignore; name a file inside "
            "the project",
            **{argument: rel},
        )
    return full


def _note(out: IO[str], message: str) -> None:
    out.write(f"[modelyard] {message}\n")
    out.flush()


def _append(path: Path | None, message: str) -> None:
    if path is None:
        return
    try:
        with open(path, "a", encoding="utf-8") as out:
            _note(out, message)
    except OSError:
        log.warning("could not write to the log of a run at %s", path)
