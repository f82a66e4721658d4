"""The parts one server composes, opened at startup and closed at shutdown, in that order.

Opening: home -> store (creates the database) -> registry -> admin key -> replica keys (each
deployment gets its own run key: ``serving/controller/run_keys.py``) -> journal (what a crash
left unwritten goes into the store, before anything is served) -> writer -> runtime ->
gateway (samples the runtime's replicas) -> controller -> ``controller.restore()`` (every active
deployment comes back) -> ``controller.watch()`` (changes made through other servers on the same
database) -> the job scheduler (``modelyard.jobs.scheduler``: recovers a crashed
life's runs, then ticks) -> the label streams (``modelyard.monitors.label_streams``: monitors'
ground truth from NATS and RabbitMQ; ``MODELYARD_LABEL_STREAMS``).
Closing is the reverse: the label streams stop first (the batches in flight are stored and
acknowledged), then the scheduler (its runs are cancelled and recorded while the
registry and the runtime still work), ``controller.shutdown()`` stops replicas (a restart restores
them), the gateway writes its last ``tech.*`` interval, the writer flushes every buffered
prediction record, the journal closes (keeping whatever the store did not take, for the next
start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from modelyard import settings
from modelyard.clock import now_ms
from modelyard.errors import InvalidInput, NotFound, StoreUnavailable
from modelyard.registry import Model, Registry, SecretBox
from modelyard.store import BufferedWriter, Journal, MetricsStore, open_store
from modelyard.ttlcache import DEFAULT_TTL_S, TTLCache
from modelyard.web.home import FirstStart, ensure_admin_key, prepare_home
from modelyard.web.store_health import StoreHealth

if TYPE_CHECKING:
    from modelyard.jobs.scheduler import Scheduler
    from modelyard.monitors.label_streams import LabelStreams
    from modelyard.runtime import Runtime
    from modelyard.serving.controller.run_keys import DeploymentKeys
    from modelyard.serving.gateway import Gateway

__all__ = [
    "ModelCache",
    "ServerConfig",
    "Services",
    "ServicesDep",
    "get_services",
    "open_services",
    "services_of",
]

log = logging.getLogger("modelyard.server")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How a server runs. ``public_metrics`` leaves ``/metrics`` open (no key) for scrapers;
    ``url`` is what replicas and the CLI are told to call (defaults to ``http://host:port``)."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 8765
    database_url: str | None = None
    public_metrics: bool = False
    # One tech.* aggregate per deployment per interval; None: MODELYARD_TECH_INTERVAL (60 s).
    tech_interval_s: float | None = None
    url: str | None = None
    inject_env: bool = True
    jobs: bool = True  # run the job scheduler (False: jobs can be defined but nothing runs them)
    # Where replicas and runs go: "local" (processes here) or "ray" (the cluster at ray_address;
    # the MODELYARD_RAY_* settings give its dashboard, token file and deploy deadline).
    runtime: str = "local"
    ray_address: str | None = None

    @property
    def base_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


class ModelCache:
    """Model records by name for the predict path, kept ``ttl_s`` like the registry's own caches.

    ``registry.get_model`` reads the database each time; the native predict route needs the
    model's settings (auth, body limit) on every call. Routes that change a model drop its entry.
    When the database cannot be read (``StoreUnavailable``), ``get`` answers the last known model
    (stale if error, ``TTLCache.stale``), so predictions go on through a store outage.
    """

    def __init__(self, registry: Registry, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._registry = registry
        self._cache: TTLCache[Model] = TTLCache(ttl_s)

    def peek(self, name: str) -> Model | None:
        """The cached model, or None when ``get`` would read the database (the predict route
        then calls ``get`` on a worker thread, never on the event loop)."""
        return self._cache.get(name)

    def get(self, name: str) -> Model:
        """The model, from the cache or the registry. Blocking on a miss (a registry read)."""
        generation = self._cache.generation()  # a drop() during the read wins over its answer
        model = self._cache.get(name)
        if model is None:
            try:
                model = self._registry.get_model(name)
            except StoreUnavailable:
                model = self._cache.stale(name)
                if model is None:
                    raise
                return model
            except NotFound:
                self._cache.forget_stale(name)
                raise
            self._cache.put(name, model, generation)
        return model

    def drop(self, name: str | None = None) -> None:
        if name is None:
            self._cache.clear()
        else:
            self._cache.discard(name)


@dataclass
class Services:
    config: ServerConfig
    store: MetricsStore
    registry: Registry
    writer: BufferedWriter
    gateway: Gateway
    runtime: Runtime  # LocalRuntime or RayRuntime (config.runtime)
    controller: Any
    first_start: FirstStart
    models: ModelCache
    replica_keys: DeploymentKeys | None = None  # each deployment's run key (revoked at close)
    started_ms: int = field(default_factory=now_ms)
    scheduler: Scheduler | None = None
    journal: Journal | None = None  # the writer's: answered records, kept until committed
    store_health: StoreHealth | None = None  # /healthz and the dashboard's banner read it
    label_streams: LabelStreams | None = None  # monitors' NATS / RabbitMQ label consumers

    async def close(self) -> None:
        """Stop jobs, stop replicas, write the last aggregates, flush records, close the
        database."""
        if self.store_health is not None:
            self.store_health.stop()
        try:
            if self.label_streams is not None:  # the batches in flight are stored and acked
                with _logged("stopping the label streams"):
                    await self.label_streams.stop()
            if self.scheduler is not None:
                with _logged("stopping the job scheduler"):
                    await asyncio.to_thread(self.scheduler.stop)
            with _logged("stopping the deployments"):
                await self.controller.shutdown()
            with _logged("closing the gateway"):
                await self.gateway.close()
            with _logged("stopping the runtime"):
                self.runtime.stop_all()
        finally:
            try:
                try:
                    self.writer.close()
                finally:
                    if self.journal is not None:  # what the store lacks stays for the next start
                        self.journal.close()
            finally:
                try:
                    self._revoke_replica_keys()
                finally:
                    self.store.close()

    def _revoke_replica_keys(self) -> None:
        if self.replica_keys is not None:
            with _logged("revoking the replicas' keys"):
                self.replica_keys.close()


def services_of(connection: HTTPConnection) -> Services:
    """The running server's parts (the one place that reads them from ``app.state``): for the
    raw Starlette routes of the hot path, which have no dependency injection."""
    services: Services = connection.app.state.services
    return services


async def get_services(request: Request) -> Services:
    """The running server's parts, for a FastAPI route: declare ``services: ServicesDep``. An
    ``async`` dependency on purpose: it only reads ``app.state`` (no thread hop, no I/O)."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]
"""How every REST and dashboard route reaches the server's parts (one dependency)."""


@contextlib.contextmanager
def _logged(what: str) -> Any:
    try:
        yield
    except Exception:  # shutdown goes on: the records must still be flushed
        log.exception("%s failed", what)


async def open_services(config: ServerConfig) -> Services:
    """Open every part for ``config`` and restore the deployments that were active."""
    from modelyard.serving.controller import Controller, EventRelay
    from modelyard.serving.gateway import Gateway

    home = prepare_home(config.home)
    store = open_store(config.database_url or f"sqlite:///{home / 'modelyard.db'}")
    journal: Journal | None = None
    try:
        registry = Registry(store)
        # Project secrets' key: MODELYARD_SECRETS_KEY (checked now), else <home>/secrets.key.
        registry.secrets.configure(SecretBox.for_home(home))
        first = ensure_admin_key(home, registry)
        replica_keys = _replica_keys(config, home, registry)
        journal = _open_journal(home, store)
        writer = BufferedWriter(store, journal=journal)
        relay = EventRelay()
        runtime = _open_runtime(config, home, relay)
        gateway = Gateway(
            writer,
            store=store,
            tech_interval_s=_tech_interval_s(config),
            replica_stats=runtime.replicas,  # per-replica CPU, memory, restarts in tech.*
        )
        controller = Controller(
            home, store, registry, runtime, gateway, events=relay, replica_keys=replica_keys
        )
    except BaseException:
        if journal is not None:
            journal.close()
        store.close()
        raise
    health = StoreHealth(store, backlog=lambda: writer.pending, journal=journal)
    services = Services(
        config,
        store,
        registry,
        writer,
        gateway,
        runtime,
        controller,
        first,
        ModelCache(registry),
        replica_keys=replica_keys,
        journal=journal,
        store_health=health,
    )
    health.start()
    try:
        await gateway.start()
        restored = await controller.restore()
    except BaseException:  # a half-started server must not leave replicas or the key behind
        await services.close()
        raise
    for name, problem in restored.items():
        if problem is not None:
            log.error("model %s did not come back: %s", name, problem)
    # Deploys, rollbacks and scales made through other servers on the same database.
    controller.watch(int(settings.get("sync_interval")) / 1000.0)
    if config.jobs:
        try:
            await asyncio.to_thread(_start_scheduler, services)
        except BaseException:
            await services.close()
            raise
    if settings.get("label_streams"):  # monitors' labels: sources on NATS and RabbitMQ
        from modelyard.monitors.label_streams import LabelStreams

        streams = LabelStreams(registry, store, interval_s=_sync_interval_s())
        streams.start()
        services.label_streams = streams
    return services


def _open_runtime(config: ServerConfig, home: Path, on_event: Any) -> Runtime:
    """The runtime ``config.runtime`` names: local processes, or the Ray cluster (docs/ray.md)."""
    if config.runtime == "local":
        from modelyard.runtime import LocalRuntime

        return LocalRuntime(home, on_event=on_event)
    if config.runtime != "ray":
        raise InvalidInput(f"runtime={config.runtime!r} is not a runtime; use local or ray")
    address = config.ray_address or settings.get("ray_address")
    if not address:
        raise InvalidInput(
            "the ray runtime needs the Ray head's address: give --ray-address HOST:PORT "
            "or set MODELYARD_RAY_ADDRESS"
        )
    try:
        from modelyard.runtime.ray import RayConnection, RayRuntime
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise InvalidInput(
            f"the ray runtime needs Ray ({exc}); install it with pip install 'modelyard[ray]'"
        ) from exc
    connection = RayConnection(
        address,
        dashboard_url=settings.get("ray_dashboard_url"),
        token_path=settings.get("ray_auth_token_path"),
    )
    deadline_s = int(settings.get("ray_deploy_timeout")) / 1000
    return RayRuntime(home, connection, on_event=on_event, deploy_timeout_s=deadline_s)


def _open_journal(home: Path, store: MetricsStore) -> Journal:
    """The prediction journal in ``<home>/journal``, with what an earlier life left uncommitted
    (a crash) written into the store first: before anything is served."""
    journal = Journal(home / "journal")
    try:
        replayed = journal.replay_into(store)
    except BaseException:
        journal.close()
        raise
    if replayed:
        log.warning(
            "wrote %d answered prediction records a crash had left in the journal", replayed
        )
    return journal


def _start_scheduler(services: Services) -> None:
    """The job scheduler, told this server's URL so runs can call back with their own key.

    Its owner name is stable across restarts of this server (``default_owner``: host and home),
    so at start it recognises the runs an earlier life left ``running`` as its own and ends them.
    """
    from modelyard.jobs.scheduler import Scheduler, default_owner

    config = services.config
    home = services.first_start.home
    scheduler = Scheduler(
        services.registry,
        services.runtime,
        services.store,
        home=home,
        server_url=config.base_url,
        owner=default_owner(home),
    )
    scheduler.start()
    services.scheduler = scheduler


def _replica_keys(config: ServerConfig, home: Path, registry: Registry) -> DeploymentKeys | None:
    """Each deployment's own ``run`` key for its replicas (``serving/controller/run_keys.py``).

    Replicas get ``MODELYARD_URL`` and a key of their own deployment (role ``run``, scope = the
    model's CRN) in their environment, so user code can call ``track_delayed_metrics`` or
    ``read_metrics``; the key reaches that model's metrics only and is revoked when the last
    replica of the deployment stops here. Keys a killed earlier life of this server left are
    revoked first. None when ``config.inject_env`` is false (replicas get no key)."""
    if not config.inject_env:
        return None
    from modelyard.jobs.scheduler import default_owner
    from modelyard.serving.controller.run_keys import DeploymentKeys

    keys = DeploymentKeys(registry, config.base_url, default_owner(home))
    left = keys.revoke_leftovers()
    if left:
        log.warning("revoked %d replica keys a stopped server left behind", left)
    return keys


def _sync_interval_s() -> float:
    """How often label streams look for new and changed monitors (0: the default, 2 s)."""
    interval_ms = int(settings.get("sync_interval"))
    return interval_ms / 1000.0 if interval_ms > 0 else 2.0


def _tech_interval_s(config: ServerConfig) -> float:
    """The config's interval, else the setting (a short one lets a demo show tech.* at once)."""
    if config.tech_interval_s is not None:
        return config.tech_interval_s
    interval_ms = int(settings.get("tech_interval"))
    if interval_ms <= 0:
        raise InvalidInput(
            f"MODELYARD_TECH_INTERVAL={os.environ.get('MODELYARD_TECH_INTERVAL')!r} must be "
            "a positive duration, such as 5s or 60s"
        )
    return interval_ms / 1000.0
