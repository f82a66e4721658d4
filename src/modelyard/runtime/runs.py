"""Job runs on this machine: one process group per run, watched by one thread.

A run ends in one of four ways: it exits 0 (succeeded), it exits otherwise (failed), its timeout
passes (timed_out) or it is cancelled (cancelled). In every case the whole process group is then
terminated (SIGTERM, SIGKILL after the grace period), so a run leaves no process behind.

Resources (``runtime.resources``): a run asking for GPUs that others hold waits for them (its log
says how many exist and who holds them; the timeout counts from launch, so waiting is bounded);
its CPU limit is applied once it is spawned; over ``memory_bytes`` resident (summed over its
process group, sampled every 0.5 s, plus the kernel's ``memory.max`` with cgroups) it is killed
and fails with the reason in its log.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from modelyard.clock import now_ms
from modelyard.runtime import leftovers
from modelyard.runtime.base import Event, EventSink, RunRecord, RunSpec, RunStatus
from modelyard.runtime.procs import build_env, sample_groups, spawn, terminate_group
from modelyard.runtime.resources import GpusBusy, LocalResources

__all__ = ["LocalRun"]

log = logging.getLogger(__name__)


class LocalRun(RunRecord):
    """A run started by :class:`~modelyard.runtime.local.LocalRuntime` (see ``RunHandle``)."""

    def __init__(
        self,
        spec: RunSpec,
        log_path: Path,
        grace_s: float,
        on_event: EventSink | None,
        record_path: Path | None = None,
        resources: LocalResources | None = None,
    ) -> None:
        self._spec = spec
        self._resources = resources
        self.waiting_for: str | None = None
        self._over_memory: str | None = None
        self._log_path = log_path
        self._grace_s = grace_s
        self._on_event = on_event
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stop_reason: RunStatus | None = None
        self._status = RunStatus.RUNNING
        self._exit_code: int | None = None
        self._ended_ms: int | None = None
        self._record_path = record_path
        self._started_ms = now_ms()
        self._started_mono = time.monotonic()
        self._popen: subprocess.Popen[bytes] | None = None
        if self._take_gpus() is not None:
            self._spawn()
        self._thread = threading.Thread(
            target=self._watch, name=f"modelyard-run-{spec.run_id}", daemon=True
        )
        self._thread.start()

    # -- RunHandle -------------------------------------------------------------------------

    @property
    def holder(self) -> str:
        return f"run {self._spec.run_id}"

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def gpu_ids(self) -> tuple[str, ...]:
        return () if self._resources is None else self._resources.gpus.held_by(self.holder)

    def cancel(self, grace_s: float | None = None) -> RunStatus:
        """Terminate the run's process group; a run that already finished keeps its status."""
        self.request_cancel(grace_s)
        self._done.wait()
        return self._status

    def request_cancel(self, grace_s: float | None = None) -> None:
        """Ask the watcher to cancel the run and return at once (``wait`` for the outcome).

        ``grace_s`` replaces the runtime's grace period between SIGTERM and SIGKILL.
        """
        with self._lock:
            if self._stop_reason is None and not self._done.is_set():
                self._stop_reason = RunStatus.CANCELLED
                if grace_s is not None:
                    self._grace_s = max(0.0, grace_s)

    # -- resources -------------------------------------------------------------------------

    def _take_gpus(self) -> dict[str, str] | None:
        """``CUDA_VISIBLE_DEVICES`` for the run, or None while others hold its GPUs (then the
        reason is in ``waiting_for`` and, once, in its log)."""
        if self._resources is None:
            return {}
        spec, pool = self._spec, self._resources.gpus
        try:
            ids = pool.acquire(self.holder, spec.gpus, spec.accelerator)
        except GpusBusy as exc:
            if self.waiting_for is None:
                self._log_line(f"=== modelyard run {spec.run_id} waiting: {exc.message} ===")
                self._emit("run_waiting", {"reason": exc.message})
            self.waiting_for = exc.message
            return None
        self.waiting_for = None
        return pool.visible_env(ids)

    def _spawn(self) -> None:
        spec = self._spec
        marker = leftovers.new_marker()
        gpu_env = self._take_gpus() or {}
        added = {"MODELYARD_RUN_ID": spec.run_id, **marker, **gpu_env}
        env = build_env(spec.env, spec.inherit_env, added)
        started = now_ms()
        header = (
            f"=== modelyard run {spec.run_id} started at {_utc_iso(started)} "
            f"({started} ms) "
            f"argv={list(spec.argv)!r} ==="
        )
        try:
            self._popen = spawn(spec.argv, spec.cwd, env, self._log_path, header)
        except OSError:
            self._release()
            raise
        if self._record_path is not None:
            leftovers.record(self._record_path, self._popen.pid, marker, list(spec.argv))
        if self._resources is not None:
            applied = self._resources.cpu.apply(
                f"run-{spec.run_id}", self._popen.pid, spec.cpus, spec.memory_bytes
            )
            if applied or spec.gpus:
                gpus = gpu_env.get("CUDA_VISIBLE_DEVICES")
                self._log_line(f"=== modelyard run {spec.run_id} limits: {applied} gpus={gpus} ===")
        self._emit("run_started", {"pid": self._popen.pid, "timeout_s": spec.timeout_s})

    def _release(self) -> None:
        if self._resources is not None:
            self._resources.gpus.release(self.holder)
            self._resources.cpu.release(f"run-{self._spec.run_id}")

    def _check_memory(self) -> None:
        """Mark the run to be stopped when its group's resident memory passes its limit."""
        limit = self._spec.memory_bytes
        if limit is None or self._popen is None or self._over_memory is not None:
            return
        sample = sample_groups([self._popen.pid]).get(self._popen.pid)
        if sample is not None and sample.rss_bytes > limit:
            self._over_memory = (
                f"resident memory {sample.rss_bytes} bytes over its limit of {limit}"
            )

    def _wait_for_gpus(self, deadline: float | None) -> bool:
        """Wait (in the watcher) until the run's GPUs are free and spawn it; False if it was
        cancelled or timed out first."""
        while self._popen is None:
            with self._lock:
                if deadline is not None and time.monotonic() >= deadline:
                    self._stop_reason = self._stop_reason or RunStatus.TIMED_OUT
                if self._stop_reason is not None:
                    return False
            if self._take_gpus() is not None:
                try:
                    self._spawn()
                except OSError as exc:
                    self._log_line(f"=== modelyard run {self.run_id} could not start: {exc} ===")
                    return False
                return True
            time.sleep(0.2)
        return True

    def _log_line(self, text: str) -> None:
        try:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._log_path, "ab") as handle:
                handle.write(text.encode() + b"\n")
        except OSError:  # pragma: no cover - the log folder vanished
            log.warning("could not write to the log of run %s", self.run_id)

    # -- the watcher -----------------------------------------------------------------------

    def _watch(self) -> None:
        timeout = self._spec.timeout_s
        deadline = None if timeout is None else self._started_mono + timeout
        code: int | None = None
        stopped_by: RunStatus | None = None
        if not self._wait_for_gpus(deadline):
            self._finish(None, self._stop_reason or RunStatus.FAILED)
            return
        assert self._popen is not None
        next_memory = 0.0
        while code is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                with self._lock:
                    if self._stop_reason is None:
                        self._stop_reason = RunStatus.TIMED_OUT
            if time.monotonic() >= next_memory:
                next_memory = time.monotonic() + 0.5
                self._check_memory()
            if self._over_memory is not None:
                self._log_line(f"=== modelyard run {self.run_id} killed: {self._over_memory} ===")
                break
            if self._stop_reason is not None:
                stopped_by = self._stop_reason
                break
            # Wake at least every 0.05 s so a cancel is seen promptly without a busy loop.
            step = 0.05 if remaining is None else max(0.0, min(0.05, remaining))
            try:
                code = self._popen.wait(timeout=step)
            except subprocess.TimeoutExpired:
                continue
        # Whatever ended the run, its group goes too: leftovers of a finished run, or the whole
        # run when it timed out or was cancelled.
        final_code = terminate_group(self._popen, self._grace_s)
        if code is None:
            code = final_code
        self._finish(code, stopped_by)

    def _finish(self, code: int | None, stopped_by: RunStatus | None) -> None:
        self._release()
        with self._lock:
            if stopped_by is not None:
                status = stopped_by
            elif code == 0:
                status = RunStatus.SUCCEEDED
            else:
                status = RunStatus.FAILED
            self._exit_code = code
            self._ended_ms = now_ms()
            self._status = status
        if self._record_path is not None:
            leftovers.forget(self._record_path)
        try:
            with open(self._log_path, "ab") as handle:
                handle.write(
                    f"=== modelyard run {self.run_id} {status.value} exit_code={code} "
                    f"at {self._ended_ms} ms ===\n".encode()
                )
        except OSError:  # pragma: no cover - the log folder vanished; the status still stands
            log.warning("could not write the end line of run %s", self.run_id)
        self._done.set()
        self._emit(
            "run_finished",
            {"status": status.value, "exit_code": code, "duration_ms": self.duration_ms},
        )

    def _emit(self, kind: str, details: dict[str, object]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(Event(kind, now_ms(), run_id=self.run_id, details=dict(details)))
        except Exception:
            log.exception("event handler failed on %s of run %s", kind, self.run_id)


def _utc_iso(ms: int) -> str:
    """``ms`` as ISO 8601 in UTC: a log is read on other machines than the server's, so its
    header names the zone rather than assuming the reader's."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
