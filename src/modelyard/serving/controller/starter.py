"""Starting a deployment's replicas: each gets its spec (``replica_specs.py``), an id and a free
port, is started through the fleet, and is handed back only once it is healthy.

The controller decides *when* replicas start (deploy, rollout, scale, restore); this says *how*
one starts, how many requests the gateway may send it at once, and which batch function it
serves (read from the file's syntax tree, in a thread: the server never imports user code).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from pathlib import Path

from modelyard.errors import ModelyardError
from modelyard.registry import Build, Deployment, Model
from modelyard.serving.controller.batch_choice import BatchChoice
from modelyard.serving.controller.fleet import Fleet, Replica
from modelyard.serving.controller.replica_specs import (
    capacity,
    new_replica_id,
    replica_spec,
    served_batch,
)
from modelyard.serving.controller.rollout import Pools, StartReplica
from modelyard.serving.controller.run_keys import DeploymentKeys
from modelyard.serving.controller.secret_env import DeploymentSecrets
from modelyard.serving.gateway import DeploymentPool

__all__ = ["ReplicaStarter"]


class ReplicaStarter:
    """Starts replicas of builds under ``home`` with ``python`` (None: the build's interpreter),
    each given ``health_timeout_s`` to become healthy or be stopped again."""

    def __init__(
        self,
        home: Path,
        fleet: Fleet,
        pools: Pools,
        python: str | None,
        health_timeout_s: float,
    ) -> None:
        self.home = home
        self.python = python
        self.health_timeout_s = health_timeout_s
        self._fleet = fleet
        self._pools = pools
        self._ordinals: defaultdict[str, int] = defaultdict(int)
        # Each deployment's run key in its replicas' environment (``run_keys.py``); None: none.
        self.keys: DeploymentKeys | None = None

    async def batch_choice(self, model: Model, built: Build) -> BatchChoice:
        """The batch function ``built``'s replicas serve (the file's syntax tree, in a thread)."""
        return await asyncio.to_thread(served_batch, built, model.settings, self.home)

    async def capacity(self, model: Model, built: Build) -> int:
        """Requests the gateway sends one replica of ``built`` at once (``capacity``)."""
        return capacity(model.settings, (await self.batch_choice(model, built)).function)

    def starter(self, model: Model, built: Build, deployment: Deployment) -> StartReplica:
        """A coroutine function starting one replica of ``deployment``, returning it healthy.
        The deployment's secrets are read once for all the replicas it starts
        (``secret_env.py``)."""
        secrets = DeploymentSecrets(self._fleet.registry, model, deployment)

        async def start() -> Replica:
            self._ordinals[deployment.crn] += 1
            spec = replica_spec(
                model,
                built,
                deployment,
                home=self.home,
                replica_id=new_replica_id(deployment.crn, self._ordinals[deployment.crn]),
                python=self.python,
                startup_timeout_s=self.health_timeout_s,
            )
            spec = dataclasses.replace(spec, env={**spec.env, **await secrets.env()})
            keys = self.keys
            if keys is not None:
                own = await asyncio.to_thread(keys.acquire, model, deployment, spec.replica_id)
                spec = dataclasses.replace(spec, env={**spec.env, **own})
            try:
                replica = await self._fleet.start(spec, model.name, deployment.crn)
            except BaseException:
                if keys is not None:
                    await asyncio.to_thread(keys.release, spec.replica_id)
                raise
            try:
                await self._fleet.wait_healthy(replica, self.health_timeout_s)
            except BaseException:
                await self._fleet.stop(replica)
                raise
            return replica

        return start

    async def start_into(
        self, pool: DeploymentPool, model: Model, built: Build, deployment: Deployment, count: int
    ) -> list[ModelyardError]:
        """Start ``count`` replicas side by side, each joining ``pool`` as soon as it is
        healthy; return the errors of those that did not start."""
        start = self.starter(model, built, deployment)
        slots = await self.capacity(model, built)

        async def start_and_join() -> None:
            self._pools.add(pool, await start(), slots)

        outcomes = await asyncio.gather(
            *(start_and_join() for _ in range(count)), return_exceptions=True
        )
        errors: list[ModelyardError] = []
        for outcome in outcomes:
            if isinstance(outcome, ModelyardError):
                errors.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        return errors
