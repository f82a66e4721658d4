"""One supervised replica: a small state machine the supervisor thread advances on every poll.

Phases (internal) and the status callers see:

- running: the process group is up; status ``starting`` until the first passing health check,
  then ``healthy`` or ``unhealthy``;
- terminating: SIGTERM was sent to the group, SIGKILL follows after the grace period; status
  ``crashed`` (it exited on its own and its leftovers are being cleared), ``restarting`` (the
  supervisor killed it: recycle or memory limit) or the previous one while a stop is under way;
- waiting: the group is gone and a restart is due after the backoff delay;
- stopped: a stop was requested and the group is gone.

Only the supervisor thread calls :meth:`SupervisedReplica.tick` (under the runtime's lock), so a
replica's process is never touched by two threads; API calls only leave requests (stop, recycle)
that the next tick carries out. Termination never blocks the loop: it is a deadline checked on
each tick.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import psutil

from modelyard.backoff import Backoff, CrashLoop
from modelyard.clock import now_ms
from modelyard.errors import InvalidInput
from modelyard.runtime import leftovers
from modelyard.runtime.base import Event, ReplicaSpec, ReplicaState, ReplicaStatus
from modelyard.runtime.health import check_health
from modelyard.runtime.memlimit import MEMORY_LIMIT_ENV
from modelyard.runtime.procs import GroupSample, build_env, signal_group, spawn
from modelyard.runtime.resources import GpusBusy, LocalResources

__all__ = ["SupervisedReplica", "SupervisorConfig"]


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """How the supervisor polls, checks health, backs off and stops. Defaults suit production;
    tests shrink the intervals."""

    poll_interval_s: float = 0.5
    health_interval_s: float = 2.0
    health_timeout_s: float = 1.0
    # Consecutive failed health checks (after the first healthy answer) that recycle a replica.
    health_failures_to_recycle: int = 3
    stop_grace_s: float = 5.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0
    backoff_jitter: float = 0.2
    stable_after_s: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "poll_interval_s",
            "health_interval_s",
            "health_timeout_s",
            "backoff_base_s",
            "backoff_cap_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise InvalidInput(f"{name}={value!r} must be a number of seconds > 0")
        if self.stop_grace_s < 0:
            raise InvalidInput(f"stop_grace_s={self.stop_grace_s!r} must be >= 0")
        if self.health_failures_to_recycle < 1:
            raise InvalidInput(
                f"health_failures_to_recycle={self.health_failures_to_recycle!r} must be >= 1"
            )


class _Phase(Enum):
    RUNNING = "running"
    TERMINATING = "terminating"
    WAITING = "waiting"
    STOPPED = "stopped"


Emit = Callable[[str, dict[str, Any]], None]


class SupervisedReplica:
    """One replica and everything the supervisor remembers about it."""

    def __init__(
        self,
        spec: ReplicaSpec,
        log_path: Path,
        config: SupervisorConfig,
        emit: Callable[[Event], None],
        record_path: Path | None = None,
        resources: LocalResources | None = None,
    ) -> None:
        self.spec = spec
        self._resources = resources
        # Set while the replica waits for GPUs others hold (what it waits for, for the view).
        self.waiting_for: str | None = None
        self.log_path = log_path
        self._record_path = record_path
        self._config = config
        self._emit_event = emit
        self._backoff = CrashLoop(
            Backoff(
                base_s=config.backoff_base_s,
                cap_s=config.backoff_cap_s,
                jitter=config.backoff_jitter,
            ),
            stable_after_s=config.stable_after_s,
        )
        self._popen: subprocess.Popen[bytes] | None = None
        self._phase = _Phase.WAITING
        self.status = ReplicaStatus.STARTING
        self.restarts = 0
        self._starts = 0
        self.last_exit_code: int | None = None
        self.started_at_ms: int | None = None
        self._started_mono = 0.0
        self.rss_bytes: int | None = None
        self.cpu_percent: float | None = None
        self._cpu_cache: dict[int, psutil.Process] = {}
        self._health: Future[tuple[bool, str]] | None = None
        self._last_check_mono = 0.0
        self._health_failures = 0
        self._ever_healthy = False
        self._next_start_mono = 0.0
        self._last_delay_s = 0.0
        self._term_deadline = 0.0
        self._term_killed = False
        self._then_stop = False
        self._recycle_reason: str | None = None
        self._stop_grace: float | None = None
        self.stopped = threading.Event()

    # -- requests from other threads (under the runtime lock) -------------------------------

    def request_stop(self, grace_s: float) -> None:
        if self._stop_grace is None:
            self._stop_grace = grace_s

    def request_recycle(self, reason: str) -> None:
        if self._recycle_reason is None:
            self._recycle_reason = reason

    # -- read side ---------------------------------------------------------------------------

    @property
    def pgid(self) -> int | None:
        """The process group to sample: set while a process exists or is being cleared away."""
        if self._popen is None or self._phase in (_Phase.WAITING, _Phase.STOPPED):
            return None
        pid: int = self._popen.pid
        return pid

    @property
    def terminating(self) -> bool:
        return self._phase is _Phase.TERMINATING

    @property
    def restart_due(self) -> float | None:
        """When a waiting replica is due to start again (monotonic seconds), else None."""
        return self._next_start_mono if self._phase is _Phase.WAITING else None

    def snapshot(self) -> ReplicaState:
        running = self._phase is _Phase.RUNNING
        return ReplicaState(
            deployment_id=self.spec.deployment_id,
            replica_id=self.spec.replica_id,
            status=self.status,
            pid=self._popen.pid if running and self._popen is not None else None,
            restarts=self.restarts,
            last_exit_code=self.last_exit_code,
            started_at_ms=self.started_at_ms,
            rss_bytes=self.rss_bytes if running else None,
            cpu_percent=self.cpu_percent if running else None,
            port=self.spec.port,
            memory_limit_bytes=self.spec.memory_limit_bytes,
            cpus=self.spec.cpus,
            log_path=self.log_path,
            gpu_ids=self.gpu_ids,
        )

    @property
    def holder(self) -> str:
        """How GPU holders and CPU pins name this replica."""
        return f"replica {self.spec.deployment_id}/{self.spec.replica_id}"

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        return () if self._resources is None else self._resources.gpus.held_by(self.holder)

    def _take_gpus(self) -> dict[str, str] | None:
        """``CUDA_VISIBLE_DEVICES`` for this start, or None while the GPUs are held by others
        (the replica waits in the waiting phase and asks again in a second)."""
        if self._resources is None:
            return {}
        pool = self._resources.gpus
        try:
            ids = pool.acquire(self.holder, self.spec.gpus, self.spec.accelerator)
        except GpusBusy as exc:
            if self.waiting_for != exc.message:
                self.waiting_for = exc.message
                self._emit("waiting_for_resources", {"reason": exc.message})
                self._write_line(f"waiting: {exc.message}")
            self._phase = _Phase.WAITING
            self._next_start_mono = time.monotonic() + 1.0
            return None
        self.waiting_for = None
        return pool.visible_env(ids)

    def _release(self) -> None:
        if self._resources is not None:
            self._resources.gpus.release(self.holder)
            self._resources.cpu.release(f"{self.spec.deployment_id}-{self.spec.replica_id}")

    # -- the state machine ---------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the process (first start or restart). A spawn error is a crash like any other."""
        spec = self.spec
        added = {
            "MODELYARD_DEPLOYMENT_ID": spec.deployment_id,
            "MODELYARD_REPLICA_ID": spec.replica_id,
        }
        if spec.port is not None:
            added["MODELYARD_PORT"] = str(spec.port)
        if spec.memory_limit_bytes is not None:  # the replica asks the kernel to enforce it
            added[MEMORY_LIMIT_ENV] = str(spec.memory_limit_bytes)
        gpu_env = self._take_gpus()
        if gpu_env is None:
            return
        added.update(gpu_env)
        marker = leftovers.new_marker()
        added.update(marker)
        self.started_at_ms = now_ms()
        self._started_mono = time.monotonic()
        first = self._starts == 0
        self._starts += 1
        if not first:
            self.restarts += 1
        header = (
            f"=== modelyard replica {spec.deployment_id}/{spec.replica_id} start "
            f"#{self._starts} at {self.started_at_ms} ms argv={list(spec.argv)!r} ==="
        )
        try:
            self._popen = spawn(
                spec.argv,
                spec.cwd,
                build_env(spec.env, spec.inherit_env, added),
                self.log_path,
                header,
            )
        except OSError as exc:
            self._popen = None
            self.status = ReplicaStatus.CRASHED
            self._emit("spawn_failed", {"error": f"{exc.__class__.__name__}: {exc}"})
            self._schedule_restart(time.monotonic())
            return
        if self._record_path is not None:
            leftovers.record(self._record_path, self._popen.pid, marker, list(spec.argv))
        self._limit(self._popen.pid, gpu_env)
        self._phase = _Phase.RUNNING
        self._health = None
        self._health_failures = 0
        self._ever_healthy = False
        self._last_check_mono = 0.0
        self._cpu_cache = {}
        self.rss_bytes = None
        self.cpu_percent = None
        self._recycle_reason = None
        self._emit(
            "started" if first else "restarted",
            {"pid": self._popen.pid, "restarts": self.restarts, "start": self._starts}
            | ({} if first else {"backoff_s": round(self._last_delay_s, 3)}),
        )
        if spec.health_path is None:
            self.status = ReplicaStatus.HEALTHY
            self._ever_healthy = True
        else:
            self.status = ReplicaStatus.STARTING

    def tick(self, now: float, sample: GroupSample | None, executor: Executor) -> None:
        """Advance one step. ``sample`` is this poll's reading of the replica's process group."""
        if self._phase is _Phase.RUNNING:
            self._tick_running(now, sample, executor)
        elif self._phase is _Phase.TERMINATING:
            self._tick_terminating(now, sample)
        elif self._phase is _Phase.WAITING:
            if self._stop_grace is not None:
                self._mark_stopped()
            elif now >= self._next_start_mono:
                self.start()

    @property
    def _proc(self) -> subprocess.Popen[bytes]:
        assert self._popen is not None, "only phases with a process call this"
        return self._popen

    def _limit(self, pid: int, gpu_env: dict[str, str]) -> None:
        """Apply the CPU (and cgroup memory) limit to the new process; log what applies."""
        if self._resources is None:
            return
        spec = self.spec
        applied = self._resources.cpu.apply(
            f"{spec.deployment_id}-{spec.replica_id}", pid, spec.cpus, spec.memory_limit_bytes
        )
        if applied:
            self._write_line(f"limits: cpus={spec.cpus} {applied}")
        if spec.gpus:
            self._write_line(f"gpus: {gpu_env.get('CUDA_VISIBLE_DEVICES')}")

    def _tick_running(self, now: float, sample: GroupSample | None, executor: Executor) -> None:
        if self._stop_grace is not None:
            self._terminate(now, self._stop_grace, then_stop=True)
            return
        code = self._proc.poll()
        if code is not None:
            self.last_exit_code = code
            details: dict[str, Any] = {
                "exit_code": code,
                "ran_for_s": round(now - self._started_mono, 3),
            }
            if code < 0:
                details["signal"] = signal.Signals(-code).name
            self._emit("exited", details)
            self.status = ReplicaStatus.CRASHED
            # Children the leader left behind would hold its port: clear the group first.
            self._terminate(now, self._config.stop_grace_s, then_stop=False)
            return
        self._measure(sample)
        limit = self.spec.memory_limit_bytes
        if limit is not None and self.rss_bytes is not None and self.rss_bytes > limit:
            self._emit(
                "memory_limit_exceeded",
                {"rss_bytes": self.rss_bytes, "limit_bytes": limit, "pid": self._proc.pid},
            )
            self.status = ReplicaStatus.RESTARTING
            self._write_line(f"killed: rss {self.rss_bytes} bytes over the limit of {limit}")
            # Like the kernel's OOM killer: no grace for a process that keeps growing.
            self._terminate(now, 0.0, then_stop=False)
            return
        if self._recycle_reason is not None:
            self._emit("recycled", {"reason": self._recycle_reason, "pid": self._proc.pid})
            self._write_line(f"recycled: {self._recycle_reason}")
            self.status = ReplicaStatus.RESTARTING
            self._terminate(now, self._config.stop_grace_s, then_stop=False)
            return
        if self.spec.health_path is not None:
            self._tick_health(now, executor)

    def _tick_health(self, now: float, executor: Executor) -> None:
        health = self._health
        if health is not None and health.done():
            self._health = None
            ok, why = health.result()
            if ok:
                self._health_failures = 0
                self._ever_healthy = True
                if self.status is not ReplicaStatus.HEALTHY:
                    self.status = ReplicaStatus.HEALTHY
                    self._emit("healthy", {})
            elif self._ever_healthy:
                self._health_failures += 1
                if self.status is ReplicaStatus.HEALTHY:
                    self.status = ReplicaStatus.UNHEALTHY
                    self._emit("unhealthy", {"reason": why})
                if self._health_failures >= self._config.health_failures_to_recycle:
                    self.request_recycle(
                        f"health check failed {self._health_failures} times in a row ({why})"
                    )
                    return
        if not self._ever_healthy and now - self._started_mono > self.spec.startup_timeout_s:
            self.request_recycle(
                f"no healthy answer within startup_timeout_s={self.spec.startup_timeout_s}"
            )
            return
        interval = self._config.health_interval_s
        if not self._ever_healthy:
            # Until the first good answer, ask on every poll: a replica that has just started
            # should take traffic as soon as it can, not one health interval later.
            interval = min(interval, self._config.poll_interval_s)
        if self._health is None and now - self._last_check_mono >= interval:
            self._last_check_mono = now
            where = self.spec.socket or self.spec.port
            assert where is not None and self.spec.health_path is not None
            self._health = executor.submit(
                check_health, where, self.spec.health_path, self._config.health_timeout_s
            )

    def _measure(self, sample: GroupSample | None) -> None:
        if sample is None:
            self.rss_bytes = 0
            self.cpu_percent = 0.0
            return
        self.rss_bytes = sample.rss_bytes
        cache: dict[int, psutil.Process] = {}
        total = 0.0
        for proc in sample.processes:
            known = self._cpu_cache.get(proc.pid, proc)
            cache[proc.pid] = known
            try:
                # The first reading of a process is 0.0: psutil needs two points in time.
                total += known.cpu_percent(None)
            except psutil.Error:
                continue
        self._cpu_cache = cache
        self.cpu_percent = total

    def _terminate(self, now: float, grace_s: float, then_stop: bool) -> None:
        self._phase = _Phase.TERMINATING
        self._then_stop = then_stop
        self._term_deadline = now + grace_s
        self._term_killed = grace_s <= 0
        self._health = None
        signal_group(self._proc.pid, signal.SIGKILL if grace_s <= 0 else signal.SIGTERM)

    def _tick_terminating(self, now: float, sample: GroupSample | None) -> None:
        if self._stop_grace is not None and not self._then_stop:
            self._then_stop = True
            self._term_deadline = min(self._term_deadline, now + self._stop_grace)
        code = self._proc.poll()
        if code is not None and sample is None:
            self.last_exit_code = code
            self._write_line(f"ended exit_code={code}")
            if self._then_stop:
                self._mark_stopped()
            else:
                self._schedule_restart(now)
            return
        if not self._term_killed and now >= self._term_deadline:
            signal_group(self._proc.pid, signal.SIGKILL)
            self._term_killed = True

    def _schedule_restart(self, now: float) -> None:
        delay = self._backoff.next_delay(now - self._started_mono)
        self._last_delay_s = delay
        self._next_start_mono = now + delay
        self._phase = _Phase.WAITING
        self.rss_bytes = None
        self.cpu_percent = None

    def _mark_stopped(self) -> None:
        self._release()
        self.waiting_for = None
        if self._record_path is not None:
            leftovers.forget(self._record_path)
        self._phase = _Phase.STOPPED
        self.status = ReplicaStatus.STOPPED
        self._emit("stopped", {"last_exit_code": self.last_exit_code})
        self.stopped.set()

    def _write_line(self, text: str) -> None:
        spec = self.spec
        line = f"=== modelyard replica {spec.deployment_id}/{spec.replica_id} {text} ===\n"
        try:
            with open(self.log_path, "ab") as handle:
                handle.write(line.encode())
        except OSError:  # pragma: no cover - the log folder vanished; supervision goes on
            pass

    def _emit(self, kind: str, details: dict[str, Any]) -> None:
        self._emit_event(
            Event(
                kind,
                now_ms(),
                deployment_id=self.spec.deployment_id,
                replica_id=self.spec.replica_id,
                details=details,
            )
        )
