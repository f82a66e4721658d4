"""Job runs on this machine: one process group per run, watched by one thread.

A run ends in one of four ways: it exits 0 (succeeded), it exits otherwise (failed), its timeout
passes (timed_out) or it is cancelled (cancelled). In every case the whole process group is then
terminated (SIGTERM, SIGKILL after the grace period), so a run leaves no process behind.
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
from modelyard.runtime.base import Event, EventSink, RunSpec, RunStatus
from modelyard.runtime.procs import build_env, spawn, terminate_group

__all__ = ["LocalRun"]

log = logging.getLogger(__name__)


class LocalRun:
    """A run started by :class:`~modelyard.runtime.local.LocalRuntime` (see ``RunHandle``)."""

    def __init__(
        self,
        spec: RunSpec,
        log_path: Path,
        grace_s: float,
        on_event: EventSink | None,
        record_path: Path | None = None,
    ) -> None:
        self._spec = spec
        self._log_path = log_path
        self._grace_s = grace_s
        self._on_event = on_event
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stop_reason: RunStatus | None = None
        self._status = RunStatus.RUNNING
        self._exit_code: int | None = None
        self._ended_ms: int | None = None
        marker = leftovers.new_marker()
        env = build_env(spec.env, spec.inherit_env, {"MODELYARD_RUN_ID": spec.run_id, **marker})
        self._record_path = record_path
        self._started_ms = now_ms()
        self._started_mono = time.monotonic()
        header = (
            f"=== modelyard run {spec.run_id} started at {_utc_iso(self._started_ms)} "
            f"({self._started_ms} ms) "
            f"argv={list(spec.argv)!r} ==="
        )
        self._popen = spawn(spec.argv, spec.cwd, env, log_path, header)
        if record_path is not None:
            leftovers.record(record_path, self._popen.pid, marker, list(spec.argv))
        self._emit("run_started", {"pid": self._popen.pid, "timeout_s": spec.timeout_s})
        self._thread = threading.Thread(
            target=self._watch, name=f"modelyard-run-{spec.run_id}", daemon=True
        )
        self._thread.start()

    # -- RunHandle -------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._spec.run_id

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def status(self) -> RunStatus:
        return self._status

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    @property
    def started_ms(self) -> int:
        return self._started_ms

    @property
    def ended_ms(self) -> int | None:
        return self._ended_ms

    @property
    def duration_ms(self) -> int | None:
        return None if self._ended_ms is None else self._ended_ms - self._started_ms

    @property
    def log_path(self) -> Path:
        return self._log_path

    def wait(self, timeout_s: float | None = None) -> RunStatus:
        self._done.wait(timeout_s)
        return self._status

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

    # -- the watcher -----------------------------------------------------------------------

    def _watch(self) -> None:
        timeout = self._spec.timeout_s
        deadline = None if timeout is None else self._started_mono + timeout
        code: int | None = None
        stopped_by: RunStatus | None = None
        while code is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                with self._lock:
                    if self._stop_reason is None:
                        self._stop_reason = RunStatus.TIMED_OUT
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
