"""The replicas one controller runs: start one and wait until it is healthy, stop one, and follow
what the runtime reports about each (pool health, replica events in the registry).

Runtime events arrive on the runtime's supervisor thread; ``EventRelay`` hands them to the event
loop with ``call_soon_threadsafe``, so everything that touches pools (which are loop-only) runs
on the loop. Events are written to the registry by one worker thread, in the order they came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from modelyard.errors import ModelyardError, NotFound, Unavailable
from modelyard.registry import Registry
from modelyard.runtime import Event, ReplicaSpec, ReplicaStatus, Runtime, check_health
from modelyard.serving.controller.replica_specs import HEALTH_PATH
from modelyard.serving.controller.run_keys import DeploymentKeys
from modelyard.serving.gateway.pool import DeploymentPool

__all__ = ["EventRelay", "Fleet", "Replica", "ReplicaStartFailed"]

log = logging.getLogger("modelyard.controller")

# Replica exit codes that no restart can cure (docs/replica.md): bad arguments, the file's import
# raised, no such function. A new replica exiting with one of them fails its rollout at once
# instead of after the whole health timeout.
FATAL_EXIT_CODES = {2: "bad arguments", 3: "importing the file raised", 4: "no such function"}
# Kinds after which a replica must get no new requests until it reports ``healthy`` again.
_NOT_SERVING = frozenset(
    {"unhealthy", "exited", "recycled", "memory_limit_exceeded", "spawn_failed", "restarted"}
)
_EARLY_EVENTS_KEPT = 1000
_PROBE_EVERY_S = 0.1
_PROBE_TIMEOUT_S = 1.0
_REMEMBERED = 10_000
_LOG_TAIL_LINES = 40


class ReplicaStartFailed(Unavailable):
    """A new replica did not become healthy; ``details["log_tail"]`` holds its log's end."""


@dataclass(eq=False)
class Replica:
    """One replica this controller started: where it listens and which pools route to it."""

    replica_id: str
    model: str
    deployment_crn: str
    runtime_deployment: str
    port: int | None
    pools: list[DeploymentPool] = field(default_factory=list)
    failure: str | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    socket: str | None = None  # its Unix socket (what the server uses), else ``port``
    remote_url: str | None = None  # a replica of a remote runtime (``ray://...``): no probe

    @property
    def address(self) -> str | int:
        """Where it listens, as ``check_health`` takes it: the socket path, else the port."""
        where = self.socket if self.socket is not None else self.port
        assert where is not None, "a replica listens on a socket or a port"
        return where

    @property
    def url(self) -> str:
        if self.remote_url is not None:
            return self.remote_url
        if self.socket is not None:
            return f"unix:{self.socket}"
        return f"http://127.0.0.1:{self.port}"


class EventRelay:
    """The runtime's ``on_event``, connected to a controller after both exist.

    ``LocalRuntime(home, on_event=relay)`` must be built before the controller that uses it;
    events that come before ``connect`` (at most 1000) are kept and handed over on connect.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: Callable[[Event], None] | None = None
        self._early: list[Event] = []

    def connect(self, target: Callable[[Event], None]) -> None:
        with self._lock:
            self._target = target
            early, self._early = self._early, []
        for event in early:
            target(event)

    def __call__(self, event: Event) -> None:
        with self._lock:
            target = self._target
            if target is None:
                if len(self._early) < _EARLY_EVENTS_KEPT:
                    self._early.append(event)
                return
        target(event)


class Fleet:
    """Replicas by id, their health waits, and the runtime's events about them."""

    def __init__(
        self,
        runtime: Runtime,
        registry: Registry,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.registry = registry
        self.monotonic = monotonic
        self.replicas: dict[str, Replica] = {}
        # replica id -> deployment CRN of replicas started here, kept after they stop (bounded)
        # so their last events (``stopped``) are still recorded.
        self._deployment_of: OrderedDict[str, str] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._early: list[Event] = []
        self._recorder = ThreadPoolExecutor(1, thread_name_prefix="modelyard-events")
        # Each deployment's run key (``run_keys.py``): released as its replicas stop here.
        self.keys: DeploymentKeys | None = None

    # -- the loop -------------------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle events on ``loop`` from now on (and those that came before it was known)."""
        if self._loop is loop:
            return
        self._loop = loop
        early, self._early = self._early, []
        for event in early:
            loop.call_soon_threadsafe(self._on_loop, event)

    def on_event(self, event: Event) -> None:
        """The runtime's event sink: any thread, returns at once."""
        loop = self._loop
        if loop is None or loop.is_closed():
            if len(self._early) < _EARLY_EVENTS_KEPT:
                self._early.append(event)
            return
        loop.call_soon_threadsafe(self._on_loop, event)

    def _on_loop(self, event: Event) -> None:
        replica_id = event.replica_id or ""
        deployment_crn = self._deployment_of.get(replica_id)
        if deployment_crn is None:
            return  # not ours (a run, or a replica of another controller)
        with contextlib.suppress(RuntimeError):  # after close(): nothing more is recorded
            self._recorder.submit(self._record, deployment_crn, event)
        replica = self.replicas.get(replica_id)
        if replica is None:
            return  # stopped on purpose: no pool routes to it any more
        kind = event.kind
        if kind == "healthy":
            self._set_healthy(replica, True)
        elif kind in _NOT_SERVING:
            self._set_healthy(replica, False)
            code = event.details.get("exit_code")
            if kind == "exited" and code in FATAL_EXIT_CODES:
                replica.failure = f"the replica exited with code {code} ({FATAL_EXIT_CODES[code]})"
        replica.changed.set()

    def _record(self, deployment_crn: str, event: Event) -> None:
        try:
            self.registry.record_event(
                deployment_crn, event.replica_id or "", event.kind, event.details, event.at_ms
            )
        except ModelyardError as exc:  # the deployment may have been deleted meanwhile
            log.info("replica event %s of %s not recorded: %s", event.kind, deployment_crn, exc)
        except Exception:
            log.exception("recording replica event %s of %s failed", event.kind, deployment_crn)

    @staticmethod
    def _set_healthy(replica: Replica, healthy: bool) -> None:
        for pool in replica.pools:
            with contextlib.suppress(NotFound):
                pool.set_healthy(replica.replica_id, healthy)

    # -- start and stop -------------------------------------------------------------------------
    async def start(self, spec: ReplicaSpec, model: str, deployment_crn: str) -> Replica:
        """Start one replica (it is not in any pool yet)."""
        assert spec.port is not None or spec.socket is not None
        replica = Replica(
            spec.replica_id,
            model,
            deployment_crn,
            spec.deployment_id,
            spec.port,
            socket=spec.socket,
        )
        remote = getattr(self.runtime, "replica_url", None)  # the Ray runtime's
        if callable(remote):
            replica.remote_url = remote(spec.replica_id)
        self.replicas[replica.replica_id] = replica  # before it starts: its events find it
        self._deployment_of[replica.replica_id] = deployment_crn
        while len(self._deployment_of) > _REMEMBERED:
            self._deployment_of.popitem(last=False)
        try:
            await asyncio.to_thread(self.runtime.start_replicas, [spec])
        except BaseException:
            self.replicas.pop(replica.replica_id, None)
            raise
        return replica

    async def wait_healthy(self, replica: Replica, timeout_s: float) -> None:
        """Return once ``replica`` answers its health check; ReplicaStartFailed if it does not
        within ``timeout_s`` or exits in a way no restart cures.

        The runtime's verdict counts, and so does a probe of our own every tenth of a second:
        the runtime asks on its poll and reads the answer on the next one (about a second with
        the default half-second poll), which would double the time a rollout takes."""
        deadline = self.monotonic() + timeout_s
        while True:
            replica.changed.clear()  # before looking: a change after the look wakes the wait
            if replica.failure is not None:
                raise self._start_failed(replica, replica.failure)
            if self._status(replica) is ReplicaStatus.HEALTHY or await self._probe(replica):
                return
            left = deadline - self.monotonic()
            if left <= 0:
                raise self._start_failed(
                    replica, f"it did not become healthy within {timeout_s:g}s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(replica.changed.wait(), min(left, _PROBE_EVERY_S))

    @staticmethod
    async def _probe(replica: Replica) -> bool:
        if replica.remote_url is not None:  # the runtime's verdict alone
            return False
        ok, _ = await asyncio.to_thread(
            check_health,
            replica.address,
            HEALTH_PATH,
            _PROBE_TIMEOUT_S,
            replica.replica_id,
        )
        return ok

    def _status(self, replica: Replica) -> ReplicaStatus | None:
        for state in self.runtime.replicas(replica.runtime_deployment):
            if state.replica_id == replica.replica_id:
                return state.status
        return None

    def _start_failed(self, replica: Replica, why: str) -> ReplicaStartFailed:
        tail = self.log_tail(replica)
        return ReplicaStartFailed(
            f"replica {replica.replica_id!r} of model {replica.model!r} failed to start: {why}; "
            "its log ends with:\n" + tail,
            replica_id=replica.replica_id,
            log_tail=tail,
        )

    def log_tail(self, replica: Replica, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            found = self.runtime.read_replica_log(
                replica.runtime_deployment, replica.replica_id, tail_lines=lines
            )
            return "\n".join(found) + "\n"
        except ModelyardError as exc:
            return f"(no log: {exc.message})\n"

    async def stop(self, replica: Replica) -> None:
        """Stop the replica's processes (SIGTERM, then SIGKILL after the runtime's grace)."""
        self.replicas.pop(replica.replica_id, None)
        replica.pools.clear()
        with contextlib.suppress(NotFound):
            await asyncio.to_thread(self.runtime.stop_replica, replica.replica_id)
        if self.keys is not None:
            await asyncio.to_thread(self.keys.release, replica.replica_id)

    async def stop_many(self, replicas: list[Replica]) -> None:
        await asyncio.gather(*(self.stop(replica) for replica in replicas))

    def of_model(self, model: str) -> list[Replica]:
        return [r for r in self.replicas.values() if r.model == model]

    def of_deployment(self, deployment_crn: str) -> list[Replica]:
        return [r for r in self.replicas.values() if r.deployment_crn == deployment_crn]

    def close(self) -> None:
        """Finish writing the events already received."""
        self._recorder.shutdown(wait=True)
