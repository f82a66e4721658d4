"""The local runtime: replicas and runs as supervised process groups on this machine.

One supervisor thread (a thread rather than an asyncio task, so it embeds in a uvicorn server or
a CLI alike) polls every ``poll_interval_s``: it samples each replica's process group once (RSS,
CPU), restarts what exited with backoff, runs health checks on a small thread pool so a hanging
replica never stalls the loop, enforces memory limits and carries out stop and recycle requests.
Runs are watched by a thread each (see ``modelyard.runtime.runs``).

Events are collected while the lock is held and handed to ``on_event`` after it is released, so
a handler may call back into the runtime; handlers run on the supervisor thread and must be quick.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from modelyard import settings
from modelyard.clock import now_ms
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.runtime import leftovers
from modelyard.runtime.base import (
    Event,
    EventSink,
    NodeInfo,
    Placement,
    ReplicaSpec,
    ReplicaState,
    RunSpec,
    Runtime,
)
from modelyard.runtime.local_nodes import local_node, local_waiting
from modelyard.runtime.logs import (
    Rotation,
    check_name,
    read_log,
    replica_log_path,
    rotate_all,
    run_log_path,
)
from modelyard.runtime.procs import check_command, sample_groups
from modelyard.runtime.resources import LocalResources
from modelyard.runtime.runs import LocalRun
from modelyard.runtime.supervised import SupervisedReplica, SupervisorConfig

__all__ = ["LocalRuntime"]

log = logging.getLogger(__name__)


# Time allowed beyond the grace period for the supervisor to notice a group has gone.
_STOP_SLACK_S = 10.0
# How often the supervisor looks at the size of running replicas' and runs' logs.
_ROTATE_EVERY_S = 1.0


class LocalRuntime:
    """Supervised replica processes and job-run processes under ``<home>/logs``.

    >>> import sys, tempfile
    >>> with LocalRuntime(tempfile.mkdtemp()) as runtime:
    ...     run = runtime.launch_run(RunSpec("hello", [sys.executable, "-c", "print('hi')"]))
    ...     print(run.wait(30).value, run.exit_code, list(runtime.read_run_log("hello"))[1])
    succeeded 0 hi
    """

    def __init__(
        self,
        home: str | Path | None = None,
        on_event: EventSink | None = None,
        config: SupervisorConfig | None = None,
        resources: LocalResources | None = None,
    ) -> None:
        self.home = Path(home) if home is not None else settings.home()
        self.config = config or SupervisorConfig()
        # CPU limits (cgroup v2 or affinity) and GPUs; tests inject a fake GPU list here.
        self.resources = resources if resources is not None else LocalResources.detect()
        # Logs are rotated by size (MODELYARD_LOG_MAX_BYTES, MODELYARD_LOG_BACKUPS): see logs.py.
        self.log_rotation = Rotation.from_settings()
        self._next_rotation = 0.0
        self._on_event = on_event
        self._lock = threading.RLock()
        self._replicas: dict[str, SupervisedReplica] = {}
        self._runs: dict[str, LocalRun] = {}
        self._pending: list[Event] = []
        self._wake = threading.Event()
        self._closed = False
        self._health_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="modelyard-health")
        self._thread = threading.Thread(target=self._loop, name="modelyard-supervisor", daemon=True)
        self._thread.start()

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    # -- replicas ------------------------------------------------------------------------------

    def start_replicas(self, specs: Sequence[ReplicaSpec]) -> list[ReplicaState]:
        """Start each replica; all specs are checked before any process starts."""
        checked = [self._check_spec(spec) for spec in specs]
        ids = [spec.replica_id for spec in checked]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise InvalidInput(f"replica ids {duplicates!r} appear more than once; ids are unique")
        with self._lock:
            self._check_open()
            taken = sorted(i for i in ids if i in self._replicas)
            if taken:
                raise Conflict(
                    f"replicas {taken!r} are already running; stop them first or use new ids"
                )
            ports = [spec.port for spec in checked if spec.port is not None]
            ports += [r.spec.port for r in self._replicas.values() if r.spec.port is not None]
            clashes = sorted({p for p in ports if ports.count(p) > 1})
            if clashes:
                raise Conflict(
                    f"ports {clashes!r} would be used by two replicas; give each its own port "
                    "(free_port() picks one)"
                )
            started = []
            for spec in checked:
                replica = SupervisedReplica(
                    spec,
                    replica_log_path(self.home, spec.deployment_id, spec.replica_id),
                    self.config,
                    self._queue_event,
                    leftovers.replica_record(self.home, spec.deployment_id, spec.replica_id),
                    self.resources,
                )
                replica.start()
                self._replicas[spec.replica_id] = replica
                started.append(replica.snapshot())
        self._flush_events()
        return started

    def stop_replica(self, replica_id: str, grace_s: float | None = None) -> ReplicaState:
        """SIGTERM the replica's group, SIGKILL it after ``grace_s``; return its final state."""
        return self._stop_many([replica_id], grace_s)[0]

    def stop_deployment(self, deployment_id: str, grace_s: float | None = None) -> None:
        """Stop every replica of a deployment, all at once."""
        with self._lock:
            ids = [r.spec.replica_id for r in self._of(deployment_id)]
        self._stop_many(ids, grace_s)

    def scale(self, deployment_id: str, specs: Sequence[ReplicaSpec]) -> list[ReplicaState]:
        """Make the deployment's replicas exactly ``specs`` (by replica id).

        Replicas not in ``specs`` are stopped, new ids are started, and ids already running are
        left as they are (a new build gets new replica ids, so a changed spec is a new id).
        """
        check_name(deployment_id, "deployment_id")
        strangers = [s.replica_id for s in specs if s.deployment_id != deployment_id]
        if strangers:
            raise InvalidInput(
                f"replicas {strangers!r} belong to another deployment than {deployment_id!r}; "
                "scale takes only that deployment's specs"
            )
        wanted = {spec.replica_id for spec in specs}
        with self._lock:
            current = {r.spec.replica_id for r in self._of(deployment_id)}
        new = [spec for spec in specs if spec.replica_id not in current]
        extra = sorted(current - wanted)
        with self._lock:
            for replica_id in extra:
                self._replicas[replica_id].request_stop(self.config.stop_grace_s)
        self._wake.set()
        if new:
            self.start_replicas(new)
        if extra:
            self._stop_many(extra, None)
        return self.replicas(deployment_id)

    def recycle(self, replica_id: str, reason: str) -> None:
        """Kill and restart a replica (for example one stuck on a request); returns at once."""
        with self._lock:
            self._get(replica_id).request_recycle(str(reason))
        self._wake.set()

    def replicas(self, deployment_id: str | None = None) -> list[ReplicaState]:
        with self._lock:
            chosen = self._replicas.values() if deployment_id is None else self._of(deployment_id)
            return [r.snapshot() for r in chosen]

    def replica(self, replica_id: str) -> ReplicaState:
        with self._lock:
            return self._get(replica_id).snapshot()

    # -- runs ----------------------------------------------------------------------------------

    def launch_run(self, spec: RunSpec) -> LocalRun:
        """Start a run in its own process group; output goes to ``<home>/logs/runs/<id>.log``."""
        check_name(spec.run_id, "run_id")
        check_command(spec.argv, spec.cwd, f"run {spec.run_id}")
        _check_resources(f"run {spec.run_id}", spec.cpus, spec.memory_bytes, "memory_bytes")
        self.resources.gpus.check(f"run {spec.run_id}", spec.gpus, spec.accelerator)
        timeout = spec.timeout_s
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise InvalidInput(
                f"run {spec.run_id} timeout_s={timeout!r} must be a number of seconds > 0, "
                "or None for no timeout"
            )
        with self._lock:
            self._check_open()
            previous = self._runs.get(spec.run_id)
            if previous is not None and not previous.status.finished:
                raise Conflict(f"run {spec.run_id!r} is still running; wait for it or cancel it")
            try:
                run = LocalRun(
                    spec,
                    run_log_path(self.home, spec.run_id),
                    self.config.stop_grace_s,
                    self._on_event,
                    leftovers.run_record(self.home, spec.run_id),
                    self.resources,
                )
            except OSError as exc:
                raise InvalidInput(
                    f"run {spec.run_id} could not start {spec.argv[0]!r}: "
                    f"{exc.__class__.__name__}: {exc}; give an existing executable"
                ) from exc
            self._runs[spec.run_id] = run
            return run

    def get_run(self, run_id: str) -> LocalRun:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} was not launched by this runtime")
        return run

    def runs(self) -> list[LocalRun]:
        with self._lock:
            return list(self._runs.values())

    # -- the cluster view ----------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        """This machine as the one node: CPUs, memory, GPUs and what runs here."""
        with self._lock:
            replicas = list(self._replicas.values())
            runs = [run for run in self._runs.values() if not run.status.finished]
        return [local_node(self.resources, replicas, runs)]

    def waiting(self) -> list[Placement]:
        """Replicas and runs waiting for GPUs others hold."""
        with self._lock:
            replicas = list(self._replicas.values())
            runs = [run for run in self._runs.values() if not run.status.finished]
        return local_waiting(replicas, runs)

    # -- logs ----------------------------------------------------------------------------------

    def read_replica_log(
        self,
        deployment_id: str,
        replica_id: str,
        tail_lines: int | None = None,
        follow: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[str]:
        """Lines of a replica's log (every start of it); ``follow`` ends when it is stopped, or
        when ``stop()`` turns true (the server's follow stream sets it when its client goes)."""
        path = replica_log_path(self.home, deployment_id, replica_id)

        def gone() -> bool:
            if stop is not None and stop():
                return True
            with self._lock:
                return self._closed or replica_id not in self._replicas

        return read_log(path, tail_lines, follow, self.config.poll_interval_s, gone)

    def read_run_log(
        self, run_id: str, tail_lines: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        """Lines of a run's log; ``follow`` ends once the run has finished."""
        path = run_log_path(self.home, run_id)
        with self._lock:
            run = self._runs.get(run_id)

        def finished() -> bool:
            return run is None or run.status.finished

        return read_log(path, tail_lines, follow, self.config.poll_interval_s, finished)

    # -- shutdown ------------------------------------------------------------------------------

    def reap_leftovers(self, grace_s: float | None = None) -> list[dict[str, object]]:
        """Kill process groups that a previous runtime on this home left running.

        A runtime that was killed (or crashed) leaves its replicas and runs running, since each
        leads its own process group. Call this at boot, before starting anything, and only when no
        other runtime uses this home. Each killed group is reported as a ``leftover_killed``
        event and returned (its record: pgid, argv, pids).
        """
        grace = self.config.stop_grace_s if grace_s is None else grace_s
        with self._lock:
            self._check_open()
            if self._replicas or any(not r.status.finished for r in self._runs.values()):
                raise Conflict(
                    "reap_leftovers must run before this runtime starts anything; "
                    "it treats every recorded process group as abandoned"
                )
        killed = leftovers.reap(self.home, grace)
        for body in killed:
            self._queue_event_locked(Event("leftover_killed", now_ms(), details=dict(body)))
        self._flush_events()
        return killed

    def stop_all(self, grace_s: float | None = None) -> None:
        """Stop every replica and cancel every run, all at once; then stop supervising."""
        with self._lock:
            if self._closed:
                return
            ids = list(self._replicas)
            runs = [run for run in self._runs.values() if not run.status.finished]
        for run in runs:
            run.request_cancel(grace_s)
        try:
            self._stop_many(ids, grace_s)
        finally:
            for run in runs:
                run.wait()
            with self._lock:
                self._closed = True
            self._wake.set()
            self._thread.join(timeout=_STOP_SLACK_S)
            self._health_pool.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------------------------

    def _check_spec(self, spec: ReplicaSpec) -> ReplicaSpec:
        if not isinstance(spec, ReplicaSpec):
            raise InvalidInput(f"{spec!r} is not a ReplicaSpec")
        check_name(spec.deployment_id, "deployment_id")
        check_name(spec.replica_id, "replica_id")
        what = f"replica {spec.replica_id}"
        check_command(spec.argv, spec.cwd, what)
        if spec.port is not None and not (isinstance(spec.port, int) and 0 < spec.port < 65536):
            raise InvalidInput(f"{what} port={spec.port!r} must be a TCP port 1-65535 or None")
        if spec.health_path is not None and (
            (spec.port is None and spec.socket is None) or not spec.health_path.startswith("/")
        ):
            raise InvalidInput(
                f"{what} health_path={spec.health_path!r} needs a port or a socket and must "
                "start with '/', "
                "such as '/healthz'"
            )
        _check_resources(what, spec.cpus, spec.memory_limit_bytes, "memory_limit_bytes")
        self.resources.gpus.check(what, spec.gpus, spec.accelerator)
        if not spec.startup_timeout_s > 0:
            raise InvalidInput(f"{what} startup_timeout_s={spec.startup_timeout_s!r} must be > 0")
        return spec

    def _check_open(self) -> None:
        if self._closed:
            raise Conflict("this runtime was stopped (stop_all); create a new LocalRuntime")

    def _get(self, replica_id: str) -> SupervisedReplica:
        replica = self._replicas.get(replica_id)
        if replica is None:
            known = sorted(self._replicas)
            raise NotFound(f"replica {replica_id!r} is not running here; running: {known!r}")
        return replica

    def _of(self, deployment_id: str) -> list[SupervisedReplica]:
        return [r for r in self._replicas.values() if r.spec.deployment_id == deployment_id]

    def _stop_many(self, replica_ids: Sequence[str], grace_s: float | None) -> list[ReplicaState]:
        grace = self.config.stop_grace_s if grace_s is None else grace_s
        if grace < 0:
            raise InvalidInput(f"grace_s={grace_s!r} must be >= 0 seconds")
        with self._lock:
            chosen = [self._get(replica_id) for replica_id in replica_ids]
            for replica in chosen:
                replica.request_stop(grace)
        self._wake.set()
        deadline = time.monotonic() + grace + _STOP_SLACK_S + self.config.poll_interval_s
        for replica in chosen:
            if not replica.stopped.wait(max(0.0, deadline - time.monotonic())):
                waited = grace + _STOP_SLACK_S
                raise Conflict(
                    f"replica {replica.spec.replica_id!r} did not stop within {waited} s; "
                    "its process group may need a manual kill"
                )
        states = []
        with self._lock:
            for replica in chosen:
                states.append(replica.snapshot())
                if self._replicas.get(replica.spec.replica_id) is replica:
                    del self._replicas[replica.spec.replica_id]
        return states

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                busy = any(r.terminating for r in self._replicas.values())
                due = [r.restart_due for r in self._replicas.values()]
            # A group being terminated is watched closely so stops and restarts are prompt, and
            # the loop wakes when a backed-off restart is due rather than at the next poll.
            interval = self.config.poll_interval_s
            if busy:
                interval = min(interval, 0.05)
            now = time.monotonic()
            for when in due:
                if when is not None:
                    interval = min(interval, max(0.0, when - now))
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self._tick()
            except Exception:  # pragma: no cover - a bug must not end supervision of the rest
                log.exception("supervisor tick failed")
            self._flush_events()

    def _tick(self) -> None:
        with self._lock:
            replicas = list(self._replicas.values())
        pgids = {r.pgid for r in replicas} - {None}
        samples = sample_groups(p for p in pgids if p is not None)
        now = time.monotonic()
        with self._lock:
            for replica in replicas:
                pgid = replica.pgid
                replica.tick(
                    now, samples.get(pgid) if pgid is not None else None, self._health_pool
                )
            logs: list[Path] = []
            if now >= self._next_rotation:
                self._next_rotation = now + _ROTATE_EVERY_S
                logs = [r.log_path for r in replicas]
                logs += [run.log_path for run in self._runs.values() if not run.status.finished]
        if logs:  # outside the lock: copying a log takes a while
            rotate_all(logs, self.log_rotation)

    def _queue_event_locked(self, event: Event) -> None:
        with self._lock:
            self._pending.append(event)

    def _queue_event(self, event: Event) -> None:
        # Called by replicas, always under the lock; handed on by _flush_events outside it.
        self._pending.append(event)

    def _flush_events(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
        if self._on_event is None:
            return
        for event in events:
            try:
                self._on_event(event)
            except Exception:
                log.exception("event handler failed on %s", event.kind)


def _check_resources(what: str, cpus: object, memory: object, memory_name: str) -> None:
    if memory is not None and (
        isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0
    ):
        raise InvalidInput(f"{what} {memory_name}={memory!r} must be bytes > 0 or None")
    if cpus is not None and not (
        isinstance(cpus, int | float)
        and not isinstance(cpus, bool)
        and math.isfinite(cpus)
        and cpus > 0
    ):
        raise InvalidInput(f"{what} cpus={cpus!r} must be a number > 0 or None")


if TYPE_CHECKING:
    # mypy checks here that LocalRuntime really implements the Runtime protocol.
    _implements: type[Runtime] = LocalRuntime
