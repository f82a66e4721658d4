"""The deployment controller: deploy, rolling replacement, rollback, scale, stop/start/delete,
restore on server start. It composes the parts and owns none of their rules:

- ``modelyard.builds.build`` makes the snapshot and the environment (blocking: run in a thread);
- the ``Registry`` records models, builds, deployments, states and replica events;
- the ``Runtime`` starts, supervises and stops replica processes;
- the ``Gateway`` routes a model's requests to its pool of replicas.

It runs on the server's event loop (uvicorn). Operations on one model are serialised by a
per-model lock; operations on different models run side by side. Runtime events come on the
runtime's supervisor thread and are handed to the loop (``EventRelay``)::

    relay = EventRelay()
    runtime = LocalRuntime(home, on_event=relay)
    controller = Controller(home, store, registry, runtime, gateway, events=relay)
    outcome = await controller.deploy("churn", "churn-project", "predict.py", "predict")
    outcome.ok, outcome.access_key   # True, 'mya_...' (the key only when the model was new)

See ``docs/deployments.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.builds import BuildResult, build, validate_function, validate_project_path
from modelyard.errors import Conflict, InvalidInput, ModelyardError, NotFound
from modelyard.registry import (
    Build,
    Deployment,
    DeploymentState,
    Model,
    ModelSettings,
    Registry,
)
from modelyard.runtime import Runtime
from modelyard.serving.controller.batch_choice import BatchChoice
from modelyard.serving.controller.carried import carried_through
from modelyard.serving.controller.fleet import EventRelay, Fleet, ReplicaStartFailed
from modelyard.serving.controller.prepare import PrepareFailed, Preparer
from modelyard.serving.controller.replica_specs import capacity, identity
from modelyard.serving.controller.reports import (
    DeployOutcome,
    ModelStatus,
    model_status,
    replica_logs,
)
from modelyard.serving.controller.rollout import Pools, Rollout, roll
from modelyard.serving.controller.run_keys import DeploymentKeys
from modelyard.serving.controller.starter import ReplicaStarter
from modelyard.serving.controller.sync import Sync
from modelyard.serving.gateway import Gateway
from modelyard.store.base import MetricsStore

__all__ = ["DEFAULT_HEALTH_TIMEOUT_S", "Controller"]

log = logging.getLogger("modelyard.controller")

DEFAULT_HEALTH_TIMEOUT_S = 60.0


def _check_replicas(replicas: object, low: int) -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not low <= replicas <= 256:
        raise InvalidInput(
            f"replicas={replicas!r} is not accepted; expected an integer from {low} to 256",
            argument="replicas",
        )
    return replicas


@dataclass(frozen=True, slots=True)
class _DeployRequest:
    """What ``deploy`` builds and how it runs, carried to the build and the rollout."""

    project: str | os.PathLike[str]
    file: str
    function: str
    example: dict[str, Any] | None
    requirements: str | None
    replicas: int
    env: dict[str, str] | None
    memory_bytes: int | None
    cpus: float | None
    secrets: tuple[str, ...] = ()  # names of project secrets its replicas get
    source: dict[str, Any] | None = None  # where an imported build came from (builds.source)


class Controller:
    """Deploys and runs models; see the module docstring.

    ``home`` is where builds live (``<home>/builds``). ``replica_python`` overrides the build's
    interpreter for replicas (None: the build's). ``health_timeout_s`` bounds how long a new
    replica may take to become healthy before its rollout is rolled back. ``now`` is a monotonic
    clock in seconds (injectable for tests). Without ``events`` the controller still sees health
    by reading the runtime's state, but records no replica events and does not follow restarts.
    """

    def __init__(  # noqa: PLR0913 - the five parts it composes, then three keyword-only options
        self,
        home: str | os.PathLike[str],
        store: MetricsStore,
        registry: Registry,
        runtime: Runtime,
        gateway: Gateway,
        *,
        events: EventRelay | None = None,
        replica_python: str | os.PathLike[str] | None = None,
        health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
        now: Callable[[], float] = time.monotonic,
        replica_keys: DeploymentKeys | None = None,
    ) -> None:
        if (
            isinstance(health_timeout_s, bool)
            or not isinstance(health_timeout_s, int | float)
            or not 0 < health_timeout_s <= 3600
        ):
            raise InvalidInput(
                f"health_timeout_s={health_timeout_s!r} is not accepted; expected seconds above "
                f"0 and at most 3600 (default {DEFAULT_HEALTH_TIMEOUT_S:g})"
            )
        self.home = Path(home)
        self.store = store
        self.registry = registry
        self.runtime = runtime
        self.gateway = gateway
        self.replica_python = None if replica_python is None else os.fspath(replica_python)
        self.health_timeout_s = float(health_timeout_s)
        self._fleet = Fleet(runtime, registry, now)
        self._fleet.keys = replica_keys  # each deployment's own run key (run_keys.py)
        self._pools = Pools(gateway, self.on_stuck)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._starts = ReplicaStarter(
            self.home, self._fleet, self._pools, self.replica_python, self.health_timeout_s
        )
        self._starts.keys = replica_keys
        self._background: set[asyncio.Task[Any]] = set()
        self._prepare = Preparer(self.home, registry)
        self._sync = Sync(self)
        with contextlib.suppress(RuntimeError):
            self._fleet.bind(asyncio.get_running_loop())
        if events is not None:
            events.connect(self._fleet.on_event)

    # -- registry calls off the loop ------------------------------------------------------------
    async def _reg(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Registry calls commit to the database: run them in a thread, never on the loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _bind(self) -> None:
        self._fleet.bind(asyncio.get_running_loop())

    # -- deploy ---------------------------------------------------------------------------------
    @carried_through
    async def deploy(  # noqa: PLR0913 - the public call: what to build, then keyword options
        self,
        name: str,
        project: str | os.PathLike[str],
        file: str,
        function: str,
        *,
        example: dict[str, Any] | None = None,
        requirements: str | None = None,
        replicas: int = 1,
        env: dict[str, str] | None = None,
        memory_bytes: int | None = None,
        cpus: float | None = None,
        settings: ModelSettings | Mapping[str, Any] | None = None,
        project_crn: str | None = None,
        secrets: tuple[str, ...] = (),
        source: dict[str, Any] | None = None,
    ) -> DeployOutcome:
        """Build ``function`` of ``file`` in ``project`` and roll it out as ``name``.

        Creates the model if it is new (in the Modelyard project ``project_crn``; None: the
        default project). A failed build returns ``ok=False`` with the build log's
        tail and leaves the running deployment untouched; so does a new replica that does not
        become healthy (the deployment is then ``failed``).
        """
        self._bind()
        validate_project_path(file, "file", suffix=".py")
        validate_function(function)
        _check_replicas(replicas, 1)
        if not Path(project).is_dir():  # checked again by the build; here so no model is created
            raise InvalidInput(
                f"project folder {os.fspath(project)!r} does not exist or is not a folder; pass "
                "the folder that holds the model's code",
                project=os.fspath(project),
            )
        request = _DeployRequest(
            project,
            file,
            function,
            example,
            requirements,
            replicas,
            env,
            memory_bytes,
            cpus,
            tuple(secrets),
            source,
        )
        async with self._locks[name]:
            model, access_key, changes = await self._ensure_model(name, settings, project_crn)
            try:
                outcome = await self._build_and_roll(model, access_key, changes, request)
            except BaseException:
                if access_key is not None:  # the model's first deploy: leave nothing behind
                    await self._forget(model)
                raise
            if not outcome.ok and access_key is not None:
                await self._forget(model)
                # The key belonged to the model just removed; the next deploy creates another.
                outcome = dataclasses.replace(outcome, access_key=None)
            return outcome

    async def _build_and_roll(
        self,
        model: Model,
        access_key: str | None,
        changes: dict[str, Any],
        request: _DeployRequest,
    ) -> DeployOutcome:
        """``deploy``'s build, records and rollout, under the model's lock."""
        name = model.name
        # Every secret it names exists in the model's project (NotFound naming the missing
        # ones), before a build that could take minutes; the values are read at replica start.
        await self._reg(self.registry.secrets.check, model.project_crn, request.secrets)
        # New settings of an existing model are checked now and stored only once the build
        # succeeded: a failed deploy leaves the model as it was.
        future = model.settings.replace(**changes) if changes else model.settings
        result: BuildResult = await asyncio.to_thread(
            build,
            request.project,
            request.file,
            request.function,
            example=request.example,
            requirements=request.requirements,
            home=self.home,
        )
        built: Build = await self._reg(
            self.registry.add_build,
            model.crn,
            digest=result.digest,
            file=result.file,
            function=result.function,
            python=str(result.python),
            env_key=result.environment_key or "none",
            ok=result.ok,
            error=result.error,
            log_path=str(result.log_path),
            batch_function=future.batch_function,
            example=request.example,
            requirements=request.requirements,
            crn=result.build_crn,
            source=request.source,
        )
        if not result.ok:
            return DeployOutcome(
                model, built, None, access_key, False, result.log_tail, result.error
            )
        # Stored before any deployment names it: another server that sees the deployment finds
        # the snapshot in the database. The build ran here, so it is ready to run here.
        await self._prepare.publish(built)
        self._prepare.ready(built)
        if changes:
            model = await self._reg(self.registry.update_model, model.crn, **changes)
        deployment: Deployment = await self._reg(
            self.registry.add_deployment,
            model.crn,
            built.crn,
            request.replicas,
            request.env,
            request.memory_bytes,
            request.cpus,
            request.secrets,
        )
        choice = await self._starts.batch_choice(model, built)
        outcome = await self._replace(model, built, deployment, access_key, choice)
        for warning in filter(None, [choice.warning]):
            log.warning("model %s: %s", name, warning)
        return dataclasses.replace(
            outcome,
            batch_function=choice.function,
            batch_function_auto=choice.auto,
            warnings=tuple(filter(None, [choice.warning])),
        )

    async def _ensure_model(
        self, name: str, settings: ModelSettings | Mapping[str, Any] | None, project_crn: str | None
    ) -> tuple[Model, str | None, dict[str, Any]]:
        """The model (created with ``settings`` if new, with its access key), and the settings
        changes still to apply to an existing one."""
        try:
            model: Model = await self._reg(self.registry.get_model, name)
        except NotFound:
            where = {} if project_crn is None else {"project_crn": project_crn}
            created, key = await self._reg(self.registry.create_model, name, settings, **where)
            return created, key, {}
        if project_crn is not None and model.project_crn != project_crn:
            raise Conflict(f"model {name!r} was created in another project meanwhile", model=name)
        if settings is None:
            return model, None, {}
        changes = settings.to_dict() if isinstance(settings, ModelSettings) else dict(settings)
        return model, None, changes

    async def _replace(
        self,
        model: Model,
        built: Build,
        deployment: Deployment,
        access_key: str | None,
        choice: BatchChoice | None = None,
    ) -> DeployOutcome:
        """Roll ``deployment`` out over whatever serves ``model`` now; make it active.

        ``choice``: the new build's batch function when the caller already knows it."""
        try:
            await self._roll(model, built, deployment, choice)
        except (ReplicaStartFailed, PrepareFailed) as exc:
            failed = await self._reg(
                self.registry.set_deployment_state, deployment.crn, DeploymentState.FAILED
            )
            tail = str(exc.details.get("log_tail", ""))
            return DeployOutcome(model, built, failed, access_key, False, tail, exc.message)
        except BaseException:
            with contextlib.suppress(ModelyardError):
                await self._reg(
                    self.registry.set_deployment_state, deployment.crn, DeploymentState.FAILED
                )
            raise
        active = await self._reg(
            self.registry.set_deployment_state, deployment.crn, DeploymentState.ACTIVE
        )
        return DeployOutcome(model, built, active, access_key, True, "")

    async def _roll(
        self, model: Model, built: Build, deployment: Deployment, choice: BatchChoice | None
    ) -> None:
        """Replace the replicas of ``model`` running here (whatever their deployment) by
        ``deployment``'s, one at a time (``rollout.roll``); the registry is not touched. Both
        builds are prepared here first (fetched, their environments made)."""
        built = await self._prepare.prepare(model.name, built)
        old = self._fleet.of_model(model.name)
        start_old = None
        old_capacity = capacity(model.settings)
        if old:
            previous: Deployment = await self._reg(
                self.registry.get_deployment, old[0].deployment_crn
            )
            old_build: Build = await self._reg(self.registry.get_build, previous.build_crn)
            old_build = await self._prepare.prepare(model.name, old_build)
            start_old = self._starts.starter(model, old_build, previous)
            old_capacity = await self._starts.capacity(model, old_build)
        if choice is None:
            choice = await self._starts.batch_choice(model, built)
        plan = Rollout(
            model=model.name,
            identity=identity(deployment),
            settings=model.settings,
            capacity=capacity(model.settings, choice.function),
            count=deployment.replicas,
            start_new=self._starts.starter(model, built, deployment),
            old=old,
            old_capacity=old_capacity,
            start_old=start_old,
        )
        await roll(self._pools, self._fleet, plan)

    # -- rollback -------------------------------------------------------------------------------
    @carried_through
    async def rollback(self, name: str, build_crn: str | None = None) -> DeployOutcome:
        """Deploy an earlier successful build again (default: the build of the most recently
        replaced deployment) with the current replica count, env and resources; no rebuild."""
        self._bind()
        async with self._locks[name]:
            model: Model = await self._reg(self.registry.get_model, name)
            deployments: list[Deployment] = await self._reg(
                self.registry.list_deployments, model.crn
            )
            if build_crn is None:
                replaced = [d for d in deployments if d.state is DeploymentState.REPLACED]
                if not replaced:
                    raise NotFound(
                        f"model {name!r} has no replaced deployment to roll back to; pass "
                        "build_crn=<one of its successful builds> (list_builds shows them)",
                        model=name,
                    )
                build_crn = replaced[0].build_crn
            built: Build = await self._reg(self.registry.get_build, build_crn)
            if built.model_crn != model.crn or not built.ok:
                raise Conflict(
                    f"build {build_crn!r} is not a successful build of model {name!r}; roll back "
                    "to one of its builds with ok=True (list_builds shows them)",
                    build_crn=build_crn,
                )
            active = next((d for d in deployments if d.state is DeploymentState.ACTIVE), None)
            template = active or (deployments[0] if deployments else None)
            deployment: Deployment = await self._reg(
                self.registry.add_deployment,
                model.crn,
                built.crn,
                max(1, template.replicas) if template else 1,
                template.env if template else None,
                template.memory_bytes if template else None,
                template.cpus if template else None,
                template.secrets if template else (),
            )
            return await self._replace(model, built, deployment, None)

    # -- scale, stop, start, delete -------------------------------------------------------------
    @carried_through
    async def scale(self, name: str, replicas: int) -> Deployment:
        """Run ``replicas`` replicas of the active deployment (0 keeps it active, answering 503).

        New replicas join as each becomes healthy; extra ones (the newest first) drain, then
        stop. ReplicaStartFailed if a new replica does not become healthy (those that did stay,
        and the deployment records how many run)."""
        self._bind()
        _check_replicas(replicas, 0)
        async with self._locks[name]:
            model: Model = await self._reg(self.registry.get_model, name)
            active = await self._active_or_conflict(model, "scale")
            running = self._fleet.of_deployment(active.crn)
            pool = self.gateway.pool(model.name)
            if pool is None:
                pool = self._pools.make(identity(active), model.settings)
                self.gateway.set_pool(model.name, pool)
            failures: list[ModelyardError] = []
            if replicas > len(running):
                built: Build = await self._reg(self.registry.get_build, active.build_crn)
                built = await self._prepare.prepare(model.name, built)
                failures = await self._starts.start_into(
                    pool, model, built, active, replicas - len(running)
                )
            else:
                extra = running[replicas:]
                await asyncio.gather(*(self._pools.drain(pool, r) for r in extra))
                await self._fleet.stop_many(extra)
            now_running = len(self._fleet.of_deployment(active.crn))
            updated: Deployment = await self._reg(
                self.registry.update_deployment, active.crn, replicas=now_running
            )
            if failures:
                raise failures[0]
            return updated

    @carried_through
    async def stop(self, name: str) -> Deployment:
        """Drain and stop every replica of the active deployment; it becomes ``stopped`` and calls
        get 503 until ``start``."""
        self._bind()
        async with self._locks[name]:
            model: Model = await self._reg(self.registry.get_model, name)
            active = await self._active_or_conflict(model, "stop")
            await self._take_down(model.name)
            stopped: Deployment = await self._reg(
                self.registry.set_deployment_state, active.crn, DeploymentState.STOPPED
            )
            return stopped

    @carried_through
    async def start(self, name: str) -> DeployOutcome:
        """Start the most recently stopped deployment again and make it active."""
        self._bind()
        async with self._locks[name]:
            model: Model = await self._reg(self.registry.get_model, name)
            active: Deployment | None = await self._reg(self.registry.active_deployment, model.crn)
            if active is not None:
                raise Conflict(
                    f"model {name!r} is already served by {active.crn}; stop it first, or use "
                    "scale to change its replicas",
                    model=name,
                )
            stopped: list[Deployment] = await self._reg(
                self.registry.list_deployments, model.crn, [DeploymentState.STOPPED]
            )
            if not stopped:
                raise NotFound(
                    f"model {name!r} has no stopped deployment to start; deploy it instead",
                    model=name,
                )
            deployment = stopped[0]
            built: Build = await self._reg(self.registry.get_build, deployment.build_crn)
            outcome = await self._replace(model, built, deployment, None)
            if not outcome.ok:  # it was stopped on purpose and has not run since: say so again
                await self._reg(
                    self.registry.set_deployment_state, deployment.crn, DeploymentState.STOPPED
                )
            return outcome

    @carried_through
    async def delete(self, name: str) -> None:
        """Stop the model, then delete it with its builds, deployments and replica events. Its
        prediction records and metrics stay in the store."""
        self._bind()
        async with self._locks[name]:
            model: Model = await self._reg(self.registry.get_model, name)
            await self._remove(model)
        self._locks.pop(name, None)

    async def _remove(self, model: Model) -> None:
        """Take ``model`` down and delete its records (under its lock)."""
        await self._take_down(model.name)
        busy: list[Deployment] = await self._reg(
            self.registry.list_deployments,
            model.crn,
            [DeploymentState.ACTIVE, DeploymentState.DEPLOYING],
        )
        for deployment in busy:
            await self._reg(
                self.registry.set_deployment_state, deployment.crn, DeploymentState.STOPPED
            )
        await self._reg(self.registry.delete_model, model.crn)

    async def _forget(self, model: Model) -> None:
        """Undo a model's failed first deploy: no model, build or deployment stays registered
        (a retry then creates the model again and is shown its access key). Logged, never
        raised: the deploy's own failure is what the caller needs to see."""
        try:
            await self._remove(model)
        except Exception:
            log.exception("removing model %s after its failed first deploy", model.name)

    async def _active_or_conflict(self, model: Model, action: str) -> Deployment:
        active: Deployment | None = await self._reg(self.registry.active_deployment, model.crn)
        if active is None:
            raise Conflict(
                f"model {model.name!r} has no active deployment to {action}; deploy it, or start "
                "a stopped deployment",
                model=model.name,
            )
        return active

    async def _take_down(self, name: str) -> None:
        """Calls to ``name`` get 503 from now on; its replicas drain, then stop."""
        replicas = self._fleet.of_model(name)
        pool = self.gateway.remove_pool(name)
        if pool is not None:
            await self._pools.retire(pool, replicas)
        await self._fleet.stop_many(replicas)

    # -- server start and stop ------------------------------------------------------------------
    @carried_through
    async def restore(self) -> dict[str, str | None]:
        """At server start: every ``active`` deployment gets its replicas and its pool back.

        A ``deploying`` deployment (a rollout cut short by a crash) is marked ``failed``; the
        deployment it was replacing is still ``active`` and comes back. Replicas a crashed server
        left running are killed first (``reap_leftovers``, when the runtime has it and has
        started nothing yet): they hold ports and memory and no pool routes to them. A build
        this server lacks is fetched and prepared first (``prepare.py``). Returns model name ->
        None when it serves again, or why not.
        """
        self._bind()
        return await self._sync.restore()

    def watch(self, interval_s: float) -> None:
        """Apply deploys, rollbacks, scales, stops and deletes made through other servers on the
        same database: compare every ``interval_s`` (``sync.py``); 0 does nothing."""
        self._bind()
        self._sync.start(interval_s)

    async def shutdown(self) -> None:
        """Drain every pool and stop every replica this controller runs. Registry states stay as
        they are, so ``restore`` at the next start brings the same deployments back."""
        await self._sync.stop()
        names = sorted({r.model for r in self._fleet.replicas.values()})
        await asyncio.gather(*(self._take_down(name) for name in names))
        await asyncio.to_thread(self._fleet.close)

    # -- what the gateway and the API ask -------------------------------------------------------
    def on_stuck(self, replica_id: str) -> None:
        """The gateway saw a request outlive its timeout: kill and restart that replica."""
        try:
            self.runtime.recycle(replica_id, "request timeout")
        except ModelyardError as exc:  # already stopped or replaced meanwhile
            log.info("not recycling %s: %s", replica_id, exc)

    def status(self, name: str) -> ModelStatus:
        """The model, its active deployment, deployments and builds, and its running replicas
        with the runtime's view (status, restarts, RSS...) and the gateway's (in flight)."""
        status = model_status(name, self.registry, self.runtime, self.gateway, self._fleet)
        return dataclasses.replace(status, preparing=self._prepare.preparing.get(name))

    def logs(self, name: str, replica: str | None = None, tail: int = 200) -> dict[str, list[str]]:
        """The last ``tail`` lines of the logs of the model's running replicas, or of one replica
        (running or not) of any of its deployments; replica id -> lines."""
        return replica_logs(name, replica, tail, self.registry, self.runtime, self._fleet)
