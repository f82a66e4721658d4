"""Job runs and experiments as Ray Jobs: one submission per run, watched by one thread.

A run is submitted with ``submission_id`` = the run id (Ray's idempotency key), the run's folder
(the snapshot, or an experiment's working copy) as ``runtime_env.working_dir`` (uploaded to the
cluster, content-hashed), the run's environment as ``env_vars`` and its resources as the
entrypoint's (``entrypoint_num_cpus``, ``entrypoint_num_gpus``, ``entrypoint_memory``), so Ray
starts it on a node that has them. What Ray does not do stays here, as on the local runtime: the
timeout (Ray has none: the watcher calls ``stop_job`` at the deadline), cancel, and the log file
under ``<home>/logs/runs`` (the job's output is copied there as it comes). A Ray job runs once;
retries are the runner's, as for local runs.

A run with requirements (``MODELYARD_BUILD_REQUIREMENTS`` in its env, the file's path in its
folder) gets them as the job's ``pip`` runtime env field, as a replica does (``_env.py``): the
node that runs the job installs them into a virtualenv of its own Python, which Ray activates
for the entrypoint, so ``python`` is that environment's (not the server's environment's path).
A failed install fails the run, with pip's error in its log.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelyard.clock import now_ms
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.runtime.base import Event, EventSink, RunRecord, RunSpec, RunStatus
from modelyard.runtime.logs import check_name, read_log, run_log_path
from modelyard.runtime.procs import check_command
from modelyard.runtime.ray._cluster import RayConnection
from modelyard.runtime.ray._env import install_failure, pip_field, requirements_of
from modelyard.tracking._env import RUN_DIR_ENV

__all__ = ["RAY_ADDRESS_ENV", "RayRun", "RayRuns", "entrypoint_of"]

log = logging.getLogger(__name__)

# What a run on Ray finds in its environment: the cluster's address (``ray.init()`` in the
# job's script connects to it; Ray Jobs also sets RAY_ADDRESS).
RAY_ADDRESS_ENV = "MODELYARD_RAY_ADDRESS"
_POLL_S = 0.2
# The job's output is fetched every this many polls (and once at the end).
_LOG_EVERY = 5
_ERRORS_BEFORE_NOTE = 5
# How long a stopped job may stay PENDING (waiting for resources) before the run ends anyway.
_STOP_PENDING_S = 5.0
_RAY_FINISHED = {"SUCCEEDED", "FAILED", "STOPPED"}


def entrypoint_of(argv: list[str], cwd: Path | None) -> str:
    """The shell command of a run on Ray: ``argv`` shell-quoted, with paths inside ``cwd`` made
    relative (the job starts in the uploaded copy of ``cwd``) and this server's interpreter as
    ``python`` (the node's, which runs the same Python and Ray).

    >>> entrypoint_of([sys.executable, "/srv/snap/train.py", "--n", "a b"], Path("/srv/snap"))
    "python train.py --n 'a b'"
    """
    words = list(argv)
    if words and words[0] == sys.executable:
        words[0] = "python"
    if cwd is not None:
        root = Path(cwd)
        for index, word in enumerate(words):
            path = Path(word)
            if path.is_absolute() and path.is_relative_to(root) and path != root:
                words[index] = str(path.relative_to(root))
    return shlex.join(words)


def _resources(spec: RunSpec) -> dict[str, Any]:
    """The entrypoint's resource requests: what Ray places the job's driver by."""
    asked: dict[str, Any] = {}
    if spec.cpus:
        asked["entrypoint_num_cpus"] = float(spec.cpus)
    if spec.gpus:
        asked["entrypoint_num_gpus"] = int(spec.gpus)
    if spec.memory_bytes:
        asked["entrypoint_memory"] = int(spec.memory_bytes)
    if spec.accelerator:
        # Ray's accelerator label resource: placed only on nodes of that GPU type.
        asked["entrypoint_resources"] = {f"accelerator_type:{spec.accelerator}": 0.001}
    return asked


class RayRun(RunRecord):
    """A run submitted as a Ray job (see ``runtime.base.RunHandle``)."""

    def __init__(
        self,
        spec: RunSpec,
        connection: RayConnection,
        log_path: Path,
        on_event: EventSink | None,
    ) -> None:
        self._spec = spec
        self._connection = connection
        self._log_path = log_path
        self._on_event = on_event
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stop_reason: RunStatus | None = None
        self._status = RunStatus.RUNNING
        self._exit_code: int | None = None
        self._ended_ms: int | None = None
        self._written = 0  # characters of the job's output copied into the log file
        self._started_ms = now_ms()
        self._started_mono = time.monotonic()
        self._client = connection.jobs()
        cwd = None if spec.cwd is None else Path(spec.cwd)
        self._requirements = requirements_of(spec.env, cwd, f"run {spec.run_id}")
        argv = list(spec.argv)
        if self._requirements and argv:  # the server's environment: the node makes its own
            argv[0] = "python"
        self.entrypoint = entrypoint_of(argv, cwd)
        if RUN_DIR_ENV in spec.env:
            # An experiment's folder is Ray's copy of it on the node that runs the job, not the
            # server's path the runner set: track_file checks paths against it.
            self.entrypoint = f'{RUN_DIR_ENV}="$PWD" {self.entrypoint}'
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._append(
            f"=== modelyard run {spec.run_id} started at {_utc_iso(self._started_ms)} "
            f"({self._started_ms} ms) argv={list(spec.argv)!r} "
            f"on ray {connection.address} as {self.entrypoint!r} ===\n"
        )
        self._submit(cwd)
        self._emit(
            "run_started",
            {
                "ray_job": spec.run_id,
                "ray_address": connection.address,
                "timeout_s": spec.timeout_s,
            },
        )
        self._thread = threading.Thread(
            target=self._watch, name=f"modelyard-ray-run-{spec.run_id}", daemon=True
        )
        self._thread.start()

    def _submit(self, cwd: Path | None) -> None:
        spec = self._spec
        env = {
            **spec.env,
            "MODELYARD_RUN_ID": spec.run_id,
            RAY_ADDRESS_ENV: self._connection.address,
        }
        runtime_env: dict[str, Any] = {"env_vars": env}
        if cwd is not None:
            runtime_env["working_dir"] = str(cwd)
            if self._requirements:
                runtime_env["pip"] = pip_field(self._requirements, cwd, _digest(cwd))
        try:
            with contextlib.suppress(Exception):  # a finished job of the same id: replaced
                self._client.delete_job(spec.run_id)
            self._client.submit_job(
                entrypoint=self.entrypoint,
                submission_id=spec.run_id,
                runtime_env=runtime_env,
                metadata={"modelyard_run": spec.run_id},
                **_resources(spec),
            )
        except (ConnectionError, OSError) as exc:
            raise self._connection.unavailable(f"submitting run {spec.run_id}: {exc}") from exc
        except RuntimeError as exc:
            text = str(exc)
            if "already exists" in text:
                raise Conflict(
                    f"run {spec.run_id!r} is still running on Ray; wait for it or cancel it"
                ) from exc
            raise InvalidInput(f"Ray refused run {spec.run_id}: {text}") from exc

    # -- RunHandle -------------------------------------------------------------------------

    def cancel(self, grace_s: float | None = None) -> RunStatus:
        """Stop the Ray job (SIGTERM to its processes, SIGKILL after Ray's stop wait); a run
        that already finished keeps its status. ``grace_s`` is not used: Ray's
        ``RAY_JOB_STOP_WAIT_TIME_S`` (default 3 s) applies."""
        self.request_cancel(grace_s)
        self._done.wait()
        return self._status

    def request_cancel(self, grace_s: float | None = None) -> None:
        """Ask the watcher to stop the run and return at once (``wait`` for the outcome)."""
        with self._lock:
            if self._stop_reason is None and not self._done.is_set():
                self._stop_reason = RunStatus.CANCELLED

    # -- the watcher -----------------------------------------------------------------------

    def _watch(self) -> None:
        timeout = self._spec.timeout_s
        deadline = None if timeout is None else self._started_mono + timeout
        stop_sent, stop_sent_mono = False, 0.0
        errors = 0
        ray_status = "PENDING"
        polls = 0
        while True:
            polls += 1
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    if self._stop_reason is None:
                        self._stop_reason = RunStatus.TIMED_OUT
            try:
                if self._stop_reason is not None and not stop_sent:
                    self._client.stop_job(self.run_id)
                    stop_sent, stop_sent_mono = True, time.monotonic()
                ray_status = str(self._client.get_job_status(self.run_id).value)
                errors = 0
            except Exception as exc:  # the head is away: keep trying, say so once in the log
                errors += 1
                if errors == _ERRORS_BEFORE_NOTE:
                    self._append(f"=== modelyard: Ray does not answer ({exc}); still trying ===\n")
            if ray_status in _RAY_FINISHED:
                break
            if stop_sent and ray_status == "PENDING" and self._pending_too_long(stop_sent_mono):
                break
            if polls % _LOG_EVERY == 0:
                self._copy_logs()
            time.sleep(_POLL_S)
        self._finish(ray_status)

    def _pending_too_long(self, since_mono: float) -> bool:
        """A job still waiting for resources does not end on ``stop_job`` (Ray queues the stop
        on its supervisor, which has no node yet): after a few seconds the run ends here, and
        the queued stop ends the job at once should it ever start."""
        if time.monotonic() - since_mono < _STOP_PENDING_S:
            return False
        self._append(
            "=== modelyard: the Ray job was still waiting for resources (cpus, memory, gpus) "
            "when it was stopped; it never ran ===\n"
        )
        return True

    def _copy_logs(self, final: bool = False) -> None:
        """Append the whole lines the job printed since the last copy to the log file (at the
        end, a last unfinished line too)."""
        try:
            text = self._client.get_job_logs(self.run_id)
        except Exception:
            return
        end = len(text) if final else text.rfind("\n") + 1
        if end > self._written:
            self._append(text[self._written : end])
            self._written = end

    def _finish(self, ray_status: str) -> None:
        self._copy_logs(final=True)
        info: Any = None
        with contextlib.suppress(Exception):
            info = self._client.get_job_info(self.run_id)
        code = getattr(info, "driver_exit_code", None)
        with self._lock:
            if self._stop_reason is not None and ray_status in ("STOPPED", "PENDING"):
                status = self._stop_reason
            elif ray_status == "SUCCEEDED":
                status = RunStatus.SUCCEEDED
            elif ray_status == "STOPPED":  # stopped through Ray itself
                status = RunStatus.CANCELLED
            else:
                status = RunStatus.FAILED
            if code is None and status is RunStatus.SUCCEEDED:
                code = 0
            self._exit_code = code
            self._ended_ms = now_ms()
            self._status = status
        message = getattr(info, "message", None)
        if status is RunStatus.FAILED and code is None and message:
            message = install_failure(message) or message
            self._append(f"=== modelyard: Ray says: {message} ===\n")
        self._append(
            f"=== modelyard run {self.run_id} {status.value} exit_code={code} "
            f"at {self._ended_ms} ms ===\n"
        )
        self._done.set()
        self._emit(
            "run_finished",
            {"status": status.value, "exit_code": code, "duration_ms": self.duration_ms},
        )

    def _append(self, text: str) -> None:
        if text and not text.endswith("\n"):
            text += "\n"  # the last line of a job that ended without one
        try:
            with open(self._log_path, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError:  # pragma: no cover - the log folder vanished; the status still stands
            log.warning("could not write to the log of run %s", self.run_id)

    def _emit(self, kind: str, details: dict[str, object]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(Event(kind, now_ms(), run_id=self.run_id, details=dict(details)))
        except Exception:
            log.exception("event handler failed on %s of run %s", kind, self.run_id)


class RayRuns:
    """The runs half of ``RayRuntime``: launch, find, read the log of and cancel Ray jobs."""

    def __init__(self, home: Path, connection: RayConnection, on_event: EventSink | None) -> None:
        self.home = Path(home)
        self._connection = connection
        self._on_event = on_event
        self._lock = threading.Lock()
        self._runs: dict[str, RayRun] = {}

    def launch_run(self, spec: RunSpec) -> RayRun:
        """Submit ``spec`` as a Ray job; its output is copied to ``<home>/logs/runs/<id>.log``."""
        check_name(spec.run_id, "run_id")
        check_command(spec.argv, spec.cwd, f"run {spec.run_id}")
        timeout = spec.timeout_s
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise InvalidInput(
                f"run {spec.run_id} timeout_s={timeout!r} must be a number of seconds > 0, "
                "or None for no timeout"
            )
        with self._lock:
            previous = self._runs.get(spec.run_id)
            if previous is not None and not previous.status.finished:
                raise Conflict(f"run {spec.run_id!r} is still running; wait for it or cancel it")
            run = RayRun(
                spec, self._connection, run_log_path(self.home, spec.run_id), self._on_event
            )
            self._runs[spec.run_id] = run
            return run

    def get_run(self, run_id: str) -> RayRun:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} was not launched by this runtime")
        return run

    def runs(self) -> list[RayRun]:
        with self._lock:
            return list(self._runs.values())

    def read_run_log(
        self, run_id: str, tail_lines: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        """Lines of a run's log (as copied from Ray); ``follow`` ends once the run finished."""
        path = run_log_path(self.home, run_id)
        with self._lock:
            run = self._runs.get(run_id)

        def finished() -> bool:
            return run is None or run.status.finished

        return read_log(path, tail_lines, follow, _POLL_S, finished)

    def stop_all(self) -> None:
        """Cancel every running run and wait for their ends."""
        running = [run for run in self.runs() if not run.status.finished]
        for run in running:
            run.request_cancel()
        for run in running:
            run.wait(30)


def _utc_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _digest(folder: Path) -> str:
    """The content hash Ray names ``folder``'s package by (the job's working dir)."""
    from ray._private.runtime_env.packaging import get_uri_for_directory

    return str(get_uri_for_directory(str(folder), include_gitignore=False))
