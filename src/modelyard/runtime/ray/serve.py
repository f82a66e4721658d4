"""Replicas on Ray Serve: each Modelyard replica is one Serve application of one replica.

Why one application per replica (not one per deployment with ``num_replicas``): the controller
already rolls, drains, scales and replaces replicas one at a time, and the gateway routes to each
replica by its own least-busy rule and resends a request whose replica died to *another* replica
(``serving/gateway/pool.py`` rule 5). With one Serve application per replica every one of those
rules holds unchanged on Ray: a rollout starts a new application, drains the old replica in the
gateway and only then deletes it (no failed request; Serve's own ``max_surge_percent`` never comes
into play, as no application is ever redeployed in place), and a handle names exactly one replica.
Serve restarts a replica whose actor died (a killed process, a lost node) in the same application.

Each application runs ``_serve_actor.ServeReplica`` (the generic wrapper) with the replica's argv,
Serve's HTTP proxy disabled (``proxy_location="Disabled"``, route prefix None: handle-only),
a high ``max_ongoing_requests`` (the gateway's pool already bounds what one replica gets at
once to its capacity, so batches fill; Serve's default of 5 would cap them), the replica's
``cpus``/``memory``/``gpus``/``accelerator`` as the actor's resource requests, and a runtime
env holding the replica's environment variables and its snapshot:

- **snapshot**: a deployment's ``runtime_env.working_dir`` accepts only remote URIs, so the
  snapshot folder (the spec's ``cwd``) is uploaded once to the cluster's GCS as a content-hashed
  package (``gcs://_ray_pkg_<hash>.zip``, Ray's own mechanism for a job's working dir; an
  unchanged snapshot is not uploaded again) and every node unpacks it where the replica lands;
  argv paths under ``cwd`` become relative to it.
- **environment**: the actor runs the node's Python, which must have the same ``modelyard[ray]``
  installed as the server (it is a driver of the same Ray). A build with requirements gets them
  as the runtime env's ``pip`` field (``_env.py``): each node that hosts a replica builds that
  virtualenv once, on first use, within the deploy deadline; a failed install fails the deploy
  with pip's message.

A deploy that is not running within ``deploy_timeout_s`` (Serve waits forever for resources the
cluster lacks) is deleted again and fails with a message naming the missing resource.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelyard.clock import now_ms
from modelyard.errors import InvalidInput, NotFound, Unavailable
from modelyard.runtime.base import Event, EventSink, ReplicaSpec, ReplicaState, ReplicaStatus
from modelyard.runtime.logs import check_name
from modelyard.runtime.memlimit import MEMORY_LIMIT_ENV
from modelyard.runtime.ray._env import (
    REQUIREMENTS_ENV,
    STILL_INSTALLING,
    install_failure,
    pip_field,
    requirements_of,
)
from modelyard.runtime.ray._head import lost_replicas
from modelyard.runtime.ray._serve_actor import EXIT_MEMORY, MEMORY_MARK

__all__ = [
    "APP_PREFIX",
    "DEPLOYMENT_NAME",
    "RayReplicas",
    "app_name",
    "replica_url",
]

log = logging.getLogger("modelyard.runtime.ray")

APP_PREFIX = "my-"
DEPLOYMENT_NAME = "replica"
_MAX_ONGOING = 4096  # the pool bounds it per replica (its capacity)
_POLL_S = 0.5
_STATE_TIMEOUT_S = 20.0
_RAY_LOG_MARKS = (":job_id:", ":actor_name:", ":task_name:")  # Ray's own lines in a worker log
_STOP_GRACE_S = 10.0
_STATUS = {
    "STARTING": ReplicaStatus.STARTING,
    "UPDATING": ReplicaStatus.STARTING,
    "PENDING_MIGRATION": ReplicaStatus.HEALTHY,
    "RUNNING": ReplicaStatus.HEALTHY,
    "RECOVERING": ReplicaStatus.RESTARTING,
    "STOPPING": ReplicaStatus.STOPPED,
    "STOPPED": ReplicaStatus.STOPPED,
}


def app_name(replica_id: str, owner: str = "") -> str:
    """The Serve application of one replica: ``my-[<owner>-]<replica id>``."""
    return APP_PREFIX + (f"{owner}-" if owner else "") + check_name(replica_id, "replica_id")


def replica_url(replica_id: str, owner: str = "") -> str:
    """What the gateway routes to: ``ray://<app>/<deployment>`` (``serving/gateway/ray_client``)."""
    return f"ray://{app_name(replica_id, owner)}/{DEPLOYMENT_NAME}"


@dataclass
class _Replica:
    spec: ReplicaSpec
    started_ms: int
    status: ReplicaStatus = ReplicaStatus.STARTING
    actor_ids: list[str] = field(default_factory=list)
    actor_name: str | None = None
    pid: int | None = None
    node_id: str | None = None
    restarts: int = 0
    failure: str | None = None


class RayReplicas:
    """The replica half of the Ray runtime (the server must be connected as a Ray driver)."""

    def __init__(
        self, on_event: EventSink | None = None, deploy_timeout_s: float = 120.0, owner: str = ""
    ) -> None:
        self.on_event = on_event
        # Names this server's applications (``my-<owner>-<replica id>``): the ones a crashed
        # earlier life of it left are deleted when Serve is first used (``_start_serve``).
        self.owner = owner
        self.deploy_timeout_s = deploy_timeout_s
        self._replicas: dict[str, _Replica] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._serve_started = False
        # The dashboard's URL for Ray's state API (logs, death causes) and its auth headers.
        self.state_address: str | None = None
        self.state_headers: Callable[[], dict[str, str]] = dict
        # Raises ``RayUnavailable`` while the head does not answer (``RayRuntime`` sets it):
        # calls to the cluster would block instead of failing.
        self.head_check: Callable[[], None] = _nothing

    # -- the Runtime interface ------------------------------------------------------------------
    def start_replicas(self, specs: Sequence[ReplicaSpec]) -> list[ReplicaState]:
        """Deploy each spec as its own application; return once all run (or fail, removed)."""
        from ray import serve

        self.head_check()
        self._start_serve()
        for spec in specs:
            if spec.replica_id in self._replicas:
                raise InvalidInput(
                    f"replica {spec.replica_id!r} already runs on the Ray runtime; give a new id"
                )
        targets = [self._target(spec) for spec in specs]
        with self._lock:
            for spec in specs:
                self._replicas[spec.replica_id] = _Replica(spec, now_ms())
        try:
            serve.run_many(targets, wait_for_applications_running=False)
        except Exception as exc:
            self._forget([spec.replica_id for spec in specs])
            raise Unavailable(f"Ray Serve refused the replicas: {exc}", runtime="ray") from exc
        for spec in specs:
            self._emit("started", spec, {"app": self.app(spec.replica_id)})
        try:
            self._wait_running(specs)
        except BaseException:
            for spec in specs:  # not waiting: a replica that never ran has nothing to drain
                with contextlib.suppress(Exception):
                    serve.delete(self.app(spec.replica_id), _blocking=False)
                self._forget([spec.replica_id])
                self._emit("stopped", spec, {})
            raise
        self._ensure_poller()
        return [self._state(spec.replica_id) for spec in specs]

    def scale(self, deployment_id: str, specs: Sequence[ReplicaSpec]) -> list[ReplicaState]:
        """Run exactly ``specs`` for ``deployment_id``: start the new ids, stop the others."""
        wanted = {spec.replica_id for spec in specs}
        current = [r.spec.replica_id for r in self._of(deployment_id)]
        for replica_id in current:
            if replica_id not in wanted:
                self.stop_replica(replica_id)
        new = [spec for spec in specs if spec.replica_id not in current]
        if new:
            self.start_replicas(new)
        return self.replicas(deployment_id)

    def stop_replica(self, replica_id: str, grace_s: float | None = None) -> ReplicaState:
        from ray import serve

        state = self._state(replica_id)
        self.head_check()
        with contextlib.suppress(Exception):
            serve.delete(self.app(replica_id), _blocking=True)
        self._forget([replica_id])
        stopped = replace(state, status=ReplicaStatus.STOPPED)
        self._emit("stopped", stopped, {})
        return stopped

    def recycle(self, replica_id: str, reason: str) -> None:
        """Kill the replica's actor; Serve starts a new one in its application."""
        import ray

        replica = self._get(replica_id)
        self.head_check()
        self._emit("recycled", replica.spec, {"reason": reason})
        if replica.actor_name is not None:
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(replica.actor_name, namespace="serve"), no_restart=True)

    def replicas(self, deployment_id: str | None = None) -> list[ReplicaState]:
        with self._lock:
            ids = [
                r.spec.replica_id
                for r in self._replicas.values()
                if deployment_id is None or r.spec.deployment_id == deployment_id
            ]
        return [self._state(replica_id) for replica_id in ids]

    def read_replica_log(
        self,
        deployment_id: str,
        replica_id: str,
        tail_lines: int | None = None,
        follow: bool = False,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[str]:
        """The replica's actor output (stdout and stderr), read through Ray's state API from
        whichever node it ran on; every actor the replica had, oldest first."""
        replica = self._get(replica_id)
        if replica.spec.deployment_id != deployment_id:
            raise NotFound(f"replica {replica_id!r} is not of deployment {deployment_id!r}")
        self.head_check()
        if not replica.actor_ids:  # started a moment ago: the poller has not seen its actor
            self.poll()
        lines: list[str] = []
        for actor_id in list(replica.actor_ids):
            for suffix in ("out", "err"):
                with contextlib.suppress(OSError, ValueError):
                    text = self._state_get(
                        "/api/v0/logs/file", {"actor_id": actor_id, "suffix": suffix, "lines": -1}
                    )
                    lines.extend(
                        line
                        for line in text.decode(errors="replace").splitlines()
                        if not line.startswith(_RAY_LOG_MARKS)
                    )
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines > 0 else []
        yield from lines

    def stop_all(self) -> None:
        self._stop.set()
        for replica_id in list(self._replicas):
            with contextlib.suppress(Exception):
                self.stop_replica(replica_id, grace_s=0)
        if self._poller is not None:
            self._poller.join(5)

    # -- deploying ------------------------------------------------------------------------------
    def _start_serve(self) -> None:
        if self._serve_started:
            return
        from ray import serve

        serve.start(proxy_location="Disabled")
        self._serve_started = True
        if self.owner:
            self._delete_leftovers()

    def app(self, replica_id: str) -> str:
        return app_name(replica_id, self.owner)

    def _delete_leftovers(self) -> None:
        """Delete the applications an earlier life of this server left (a crash, a SIGKILL):
        they carry its owner, and this life tracks none of them."""
        from ray import serve

        prefix = app_name("x", self.owner)[:-1]
        with self._lock:
            mine = {self.app(replica_id) for replica_id in self._replicas}
        for name in serve.status().applications:
            if name.startswith(prefix) and name not in mine:
                log.warning("deleting Serve application %s left by an earlier server", name)
                with contextlib.suppress(Exception):
                    serve.delete(name, _blocking=False)

    def _target(self, spec: ReplicaSpec) -> Any:
        from ray import serve

        from modelyard.runtime.ray._serve_actor import ServeReplica

        argv, runtime_env = _runtime_env(spec)
        options: dict[str, Any] = {}
        if "pip" in runtime_env:
            # The node's agent already tries an install 3 times: Serve's own retries (3 more
            # actors) would only triple the wait for the same error.
            options["max_constructor_retry_count"] = 1
            runtime_env["config"] = {"setup_timeout_seconds": max(1, int(self.deploy_timeout_s))}
        actor_options: dict[str, Any] = {
            "num_cpus": spec.cpus if spec.cpus is not None else 1.0,
            "runtime_env": runtime_env,
        }
        if spec.memory_limit_bytes:
            actor_options["memory"] = spec.memory_limit_bytes
        if spec.gpus:
            actor_options["num_gpus"] = spec.gpus
        if spec.accelerator:
            actor_options["accelerator_type"] = spec.accelerator
        deployment = serve.deployment(ServeReplica).options(  # type: ignore[attr-defined]
            name=DEPLOYMENT_NAME,
            num_replicas=1,
            max_ongoing_requests=_MAX_ONGOING,
            ray_actor_options=actor_options,
            health_check_period_s=2.0,
            health_check_timeout_s=max(5.0, spec.startup_timeout_s / 4),
            graceful_shutdown_timeout_s=_STOP_GRACE_S,
            graceful_shutdown_wait_loop_s=0.5,
            # No line per call in the replica's log: the gateway records every request.
            logging_config={"enable_access_log": False},
            **options,
        )
        app = deployment.bind(argv, spec.replica_id, spec.memory_limit_bytes)
        return serve.RunTarget(target=app, name=self.app(spec.replica_id), route_prefix=None)

    def _wait_running(self, specs: Sequence[ReplicaSpec]) -> None:
        from ray import serve

        deadline = time.monotonic() + self.deploy_timeout_s
        waiting = {self.app(spec.replica_id): spec for spec in specs}
        while waiting:
            apps = serve.status().applications
            for name, spec in list(waiting.items()):
                status = apps.get(name)
                if status is None:
                    continue
                if status.status == "RUNNING":
                    waiting.pop(name)
                    with self._lock:
                        replica = self._replicas.get(spec.replica_id)
                    lost_replicas().lower(name)
                    if replica is not None and replica.status is not ReplicaStatus.HEALTHY:
                        replica.status = ReplicaStatus.HEALTHY
                        self._emit("healthy", spec, {})
                elif status.status == "DEPLOY_FAILED":
                    raise Unavailable(
                        f"replica {spec.replica_id!r} failed to start on the Ray runtime: "
                        f"{_message(status)}",
                        runtime="ray",
                        replica_id=spec.replica_id,
                    )
            if not waiting:
                break
            if time.monotonic() >= deadline:
                spec = next(iter(waiting.values()))
                raise Unavailable(
                    f"replica {spec.replica_id!r} was not running on the Ray runtime within "
                    f"{self.deploy_timeout_s:g}s (MODELYARD_RAY_DEPLOY_TIMEOUT): "
                    f"{missing_resources(spec)}",
                    runtime="ray",
                    replica_id=spec.replica_id,
                )
            time.sleep(0.1)

    # -- following ------------------------------------------------------------------------------
    def _ensure_poller(self) -> None:
        if self._poller is None or not self._poller.is_alive():
            self._poller = threading.Thread(
                target=self._poll_loop, daemon=True, name="modelyard-ray-replicas"
            )
            self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(_POLL_S):
            try:
                self.poll()
            except Exception:  # the head may be away; the gateway answers 503 meanwhile
                log.debug("polling Ray Serve failed", exc_info=True)

    def poll(self) -> None:
        """Read every replica's actor from Serve and report what changed."""
        from ray.serve.context import _get_global_client

        self.head_check()
        client = _get_global_client()
        if client is None:
            raise Unavailable("Ray Serve is not running on the cluster", runtime="ray")
        details = client.get_serve_details()
        applications = details.get("applications", {})
        with self._lock:
            tracked = list(self._replicas.values())
        for replica in tracked:
            app = applications.get(self.app(replica.spec.replica_id))
            rows = [] if app is None else app["deployments"][DEPLOYMENT_NAME]["replicas"]
            self._follow(replica, rows[0] if rows else None)

    def _follow(self, replica: _Replica, row: dict[str, Any] | None) -> None:
        status = ReplicaStatus.CRASHED if row is None else _STATUS.get(row["state"])
        status = status or ReplicaStatus.STARTING
        if row is not None and row.get("actor_id"):
            actor_id = row["actor_id"]
            if actor_id not in replica.actor_ids:
                replica.actor_ids.append(actor_id)
                if len(replica.actor_ids) > 1:
                    replica.restarts += 1
                    self._emit("restarted", replica.spec, self._death(replica.actor_ids[-2]))
            replica.actor_name = row.get("actor_name")
            replica.pid = row.get("pid")
            replica.node_id = row.get("node_id")
        previous, replica.status = replica.status, status
        if status is ReplicaStatus.HEALTHY:
            lost_replicas().lower(self.app(replica.spec.replica_id))
        elif previous is ReplicaStatus.HEALTHY:  # calls to it would wait for a new actor
            lost_replicas().raise_(self.app(replica.spec.replica_id))
        if status is previous:
            return
        if status is ReplicaStatus.HEALTHY:
            self._emit("healthy", replica.spec, {"node_id": replica.node_id})
        elif previous is ReplicaStatus.HEALTHY:
            self._emit("unhealthy", replica.spec, {"state": None if row is None else row["state"]})

    def _state_get(self, path: str, params: dict[str, Any]) -> bytes:
        """GET ``path`` of Ray's state API on the dashboard, with the cluster's token."""
        if self.state_address is None:
            raise ValueError("no dashboard address for Ray's state API")
        url = f"{self.state_address}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers=self.state_headers())
        with urllib.request.urlopen(request, timeout=_STATE_TIMEOUT_S) as answer:
            body: bytes = answer.read()
        return body

    def _death(self, actor_id: str) -> dict[str, Any]:
        """Why an actor ended, as far as Ray's state API tells (exit code, memory limit)."""
        details: dict[str, Any] = {"actor_id": actor_id}
        with contextlib.suppress(Exception):
            params = {"filter_keys": "actor_id", "filter_predicates": "=",
                      "filter_values": actor_id, "detail": "true"}  # fmt: skip
            body = json.loads(self._state_get("/api/v0/actors", params))
            rows = body["data"]["result"]["result"]
            cause = json.dumps(rows[0].get("death_cause") or "") if rows else ""
            details["reason"] = cause[:500]
            if f"exit code {EXIT_MEMORY}" in cause or MEMORY_MARK in cause:
                details["memory_limit_exceeded"] = True
        return details

    # -- bookkeeping ----------------------------------------------------------------------------
    def tracked(self) -> list[_Replica]:
        """Every replica this runtime runs (a copy of the list)."""
        with self._lock:
            return list(self._replicas.values())

    def _get(self, replica_id: str) -> _Replica:
        with self._lock:
            replica = self._replicas.get(replica_id)
        if replica is None:
            known = ", ".join(sorted(self._replicas)) or "none"
            raise NotFound(
                f"replica {replica_id!r} does not run on the Ray runtime; running: {known}"
            )
        return replica

    def _of(self, deployment_id: str) -> list[_Replica]:
        with self._lock:
            return [r for r in self._replicas.values() if r.spec.deployment_id == deployment_id]

    def _forget(self, replica_ids: Sequence[str]) -> None:
        with self._lock:
            for replica_id in replica_ids:
                self._replicas.pop(replica_id, None)
                lost_replicas().forget(self.app(replica_id))

    def _state(self, replica_id: str) -> ReplicaState:
        replica = self._get(replica_id)
        spec = replica.spec
        return ReplicaState(
            deployment_id=spec.deployment_id,
            replica_id=spec.replica_id,
            status=replica.status,
            pid=replica.pid,
            restarts=replica.restarts,
            last_exit_code=None,
            started_at_ms=replica.started_ms,
            rss_bytes=None,
            cpu_percent=None,
            port=None,
            memory_limit_bytes=spec.memory_limit_bytes,
            cpus=spec.cpus,
            log_path=Path(replica_url(replica_id, self.owner)),
        )

    def _emit(self, kind: str, what: ReplicaSpec | ReplicaState, details: dict[str, Any]) -> None:
        if kind == "restarted" and details.get("memory_limit_exceeded"):
            kind = "memory_limit_exceeded"
        if self.on_event is None:
            return
        event = Event(
            kind,
            now_ms(),
            deployment_id=what.deployment_id,
            replica_id=what.replica_id,
            details={"runtime": "ray", **details},
        )
        try:
            self.on_event(event)
        except Exception:
            log.exception("on_event failed for %s", kind)


def _nothing() -> None:
    return None


def _runtime_env(spec: ReplicaSpec) -> tuple[list[str], dict[str, Any]]:
    """The argv the actor runs (paths under the snapshot made relative to it) and its
    runtime env: the snapshot as a GCS package, the environment variables, the build's
    requirements as the ``pip`` field."""
    env = {k: v for k, v in spec.env.items() if k != REQUIREMENTS_ENV}
    if spec.memory_limit_bytes:
        env[MEMORY_LIMIT_ENV] = str(spec.memory_limit_bytes)
    env["MODELYARD_REPLICA_ID"] = spec.replica_id
    runtime_env: dict[str, Any] = {"env_vars": env}
    argv = [str(part) for part in spec.argv]
    if spec.cwd is not None:
        folder = str(Path(spec.cwd))
        runtime_env["working_dir"] = upload_folder(folder)
        argv = ["." if part == folder else part for part in argv]
    lines = requirements_of(spec.env, spec.cwd, f"replica {spec.replica_id!r}")
    if lines and spec.cwd is not None:
        runtime_env["pip"] = pip_field(lines, Path(spec.cwd), runtime_env.get("working_dir"))
    return argv, runtime_env


_uploaded: dict[str, str] = {}


def upload_folder(folder: str) -> str:
    """``folder`` as a content-hashed package in the cluster's GCS; its ``gcs://`` URI."""
    from ray._private.runtime_env.packaging import get_uri_for_directory, upload_package_if_needed

    if not Path(folder).is_dir():
        raise InvalidInput(f"replica folder {folder!r} is not a folder; give the build's snapshot")
    uri = get_uri_for_directory(folder, include_gitignore=False)
    if _uploaded.get(folder) != uri:
        upload_package_if_needed(uri, str(Path(folder).parent), folder, include_gitignore=False)
        _uploaded[folder] = uri
    return uri


def missing_resources(spec: ReplicaSpec) -> str:
    """Which resource the replica asks for that no node has, or that none has free now."""
    import ray

    wanted: dict[str, float] = {"CPU": spec.cpus if spec.cpus is not None else 1.0}
    if spec.memory_limit_bytes:
        wanted["memory"] = float(spec.memory_limit_bytes)
    if spec.gpus:
        wanted["GPU"] = float(spec.gpus)
    if spec.accelerator:
        wanted[f"accelerator_type:{spec.accelerator}"] = 0.001
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
    free = ray.available_resources()  # type: ignore[no-untyped-call]
    for name, amount in wanted.items():
        largest = max((node.get(name, 0.0) for node in nodes), default=0.0)
        if largest < amount:
            return (
                f"it asks for {_amount(name, amount)} and no node of the cluster has that much "
                f"(the largest has {_amount(name, largest)}, {len(nodes)} nodes alive); lower the "
                "request or add a node that has it"
            )
    short = [name for name, amount in wanted.items() if free.get(name, 0.0) < amount]
    if short:
        name = short[0]
        return (
            f"it asks for {_amount(name, wanted[name])} and the cluster has "
            f"{_amount(name, free.get(name, 0.0))} free (the rest is taken by other replicas "
            "and jobs); stop some or add a node"
        )
    if spec.env.get(REQUIREMENTS_ENV):
        return STILL_INSTALLING
    return "the cluster has the resources it asks for; its runtime env may still be installing"


def _amount(name: str, value: float) -> str:
    if name == "memory":
        return f"{value / 1024**2:.0f} MiB of memory"
    if name.startswith("accelerator_type:"):
        return f"accelerator {name.split(':', 1)[1]}" if value else "no such accelerator"
    return f"{value:g} {name}"


def _message(status: Any) -> str:
    messages = [status.message] + [d.message for d in status.deployments.values()]
    text = "; ".join(m for m in messages if m) or "no message from Ray Serve"
    short = text if len(text) <= 2000 else "..." + text[-2000:]  # the user's error is at the end
    return install_failure(text) or short
