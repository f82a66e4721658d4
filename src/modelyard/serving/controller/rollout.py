"""Pools and the one-at-a-time rolling replacement, with no failed request on the way.

The rules that keep every request answered:

- A replica joins a pool only once the runtime calls it healthy, so no request meets a replica
  that is still importing the user's code.
- A replica leaves a pool by draining: no new requests, the ones in flight finish, then it is
  removed and only then stopped. Requests waiting in the queue are served by the others.
- During a rollout one pool (routing by model name) holds old and new replicas side by side; each
  new endpoint carries the new deployment's identity, so records name the build that answered.
  Once only new replicas are left, a fresh pool with the new identity and the model's current
  settings takes over in one swap; the old pool keeps serving what it already holds (its queue
  empties first, then its endpoints drain) and is closed.
- If a new replica never becomes healthy the rollout is rolled back: old replicas already retired
  are started again, then the new ones drain and stop. The old deployment never stops serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from modelyard.errors import GatewayTimeout, NotFound
from modelyard.registry import ModelSettings
from modelyard.serving.controller.fleet import Fleet, Replica, ReplicaStartFailed
from modelyard.serving.gateway import Gateway
from modelyard.serving.gateway.pool import DeploymentPool, PoolSettings, ReplicaEndpoint
from modelyard.store.base import Identity

__all__ = ["Pools", "Rollout", "StartReplica", "pool_settings", "roll"]

log = logging.getLogger("modelyard.controller")

# Slack on top of a request's own timeout when waiting for it to finish during a drain.
_DRAIN_SLACK_S = 1.0
_QUEUE_POLL_S = 0.01


def pool_settings(settings: ModelSettings) -> PoolSettings:
    return PoolSettings(
        max_queue=settings.max_queue,
        queue_timeout_s=settings.queue_timeout_s,
        request_timeout_s=settings.request_timeout_s,
        max_body_bytes=settings.max_body_bytes,
        resend=settings.retry,
    )


class Pools:
    """Making pools, adding and draining replicas, and swapping a model's pool."""

    def __init__(self, gateway: Gateway, on_stuck: Callable[[str], Any]) -> None:
        self.gateway = gateway
        self.on_stuck = on_stuck

    def make(self, identity: Identity, settings: ModelSettings) -> DeploymentPool:
        return DeploymentPool(identity, pool_settings(settings), on_stuck=self.on_stuck)

    @staticmethod
    def add(
        pool: DeploymentPool, replica: Replica, capacity: int, identity: Identity | None = None
    ) -> None:
        """Route to ``replica`` (healthy by now); ``identity`` overrides the pool's on records."""
        pool.add_endpoint(ReplicaEndpoint(replica.replica_id, replica.url, capacity, identity))
        replica.pools.append(pool)

    @staticmethod
    async def drain(pool: DeploymentPool, replica: Replica) -> None:
        """Take ``replica`` out of ``pool`` once its in-flight requests have finished."""
        timeout = pool.settings.request_timeout_s + _DRAIN_SLACK_S
        try:
            await pool.remove_endpoint(replica.replica_id, drain=True, timeout_s=timeout)
        except GatewayTimeout:  # cannot happen unless a request outlived its own timeout
            log.warning("replica %s did not drain in %ss; removed", replica.replica_id, timeout)
            await pool.remove_endpoint(replica.replica_id, drain=False)
        except NotFound:
            pass
        with contextlib.suppress(ValueError):
            replica.pools.remove(pool)

    async def retire(self, pool: DeploymentPool, replicas: list[Replica]) -> None:
        """Wind down a pool the gateway no longer routes to: let its queue empty (its endpoints
        still serve the waiting requests), drain every endpoint, close it."""
        settings = pool.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.queue_timeout_s + _DRAIN_SLACK_S
        while pool.queue_depth and loop.time() < deadline:
            await asyncio.sleep(_QUEUE_POLL_S)
        by_id = {r.replica_id: r for r in replicas}
        endpoints = pool.endpoints()
        await asyncio.gather(
            *(self.drain(pool, by_id[ep.replica_id]) for ep in endpoints if ep.replica_id in by_id)
        )
        for ep in endpoints:  # endpoints of replicas this controller no longer knows
            if ep.replica_id not in by_id:
                with contextlib.suppress(NotFound):
                    await pool.remove_endpoint(ep.replica_id, drain=False)
        await pool.close()

    async def reseat(
        self,
        model: str,
        pool: DeploymentPool,
        replicas: list[Replica],
        identity: Identity,
        settings: ModelSettings,
        capacity: int,
    ) -> DeploymentPool:
        """Give ``model`` a fresh pool with ``identity`` and ``settings`` over ``replicas``."""
        fresh = self.make(identity, settings)
        healthy = {ep.replica_id: ep.healthy for ep in pool.endpoints()}
        for replica in replicas:
            self.add(fresh, replica, capacity)
            if not healthy.get(replica.replica_id, True):
                fresh.set_healthy(replica.replica_id, False)
        self.gateway.set_pool(model, fresh)
        await self.retire(pool, replicas)
        return fresh


StartReplica = Callable[[], Awaitable[Replica]]


@dataclass(frozen=True, slots=True)
class Rollout:
    """One rollout of ``model``: ``count`` replicas of the new deployment (``identity``, each
    given ``capacity`` requests at once, started by ``start_new``) replace ``old``, the running
    replicas of the deployment serving it now (each given ``old_capacity``; ``start_old``
    starts one again when a rollback needs it, None when nothing served before)."""

    model: str
    identity: Identity
    settings: ModelSettings
    capacity: int
    count: int
    start_new: StartReplica
    old: list[Replica]
    old_capacity: int
    start_old: StartReplica | None


async def roll(pools: Pools, fleet: Fleet, plan: Rollout) -> list[Replica]:
    """Replace ``plan.old`` by ``plan.count`` new replicas one at a time; return the new ones.

    ``start_new`` / ``start_old`` start one replica of the new / old deployment and return it
    once healthy (raising ``ReplicaStartFailed`` otherwise, the replica already stopped).
    On ``ReplicaStartFailed`` (or any other error) the model is left served by its old replicas
    and the error is raised again for the caller to record.
    """
    model, identity, old, count = plan.model, plan.identity, plan.old, plan.count
    gateway = pools.gateway
    pool = gateway.pool(model)
    fresh = pool is None
    if pool is None:
        pool = pools.make(identity, plan.settings)
    started: list[Replica] = []
    retired = 0
    try:
        for step in range(max(len(old), count)):
            if step < count:
                replica = await plan.start_new()
                started.append(replica)
                pools.add(pool, replica, plan.capacity, None if fresh else identity)
                if fresh and step == 0:
                    gateway.set_pool(model, pool)
            if step < len(old):
                await pools.drain(pool, old[step])
                await fleet.stop(old[step])
                retired += 1
    except Exception:  # ReplicaStartFailed, or the runtime refusing a start: put things back
        await _undo(pools, fleet, plan, pool, fresh, started, retired)
        raise
    if not fresh:
        await pools.reseat(model, pool, started, identity, plan.settings, plan.capacity)
    return started


async def _undo(
    pools: Pools,
    fleet: Fleet,
    plan: Rollout,
    pool: DeploymentPool,
    fresh: bool,
    started: list[Replica],
    retired: int,
) -> None:
    """Put the old deployment back as it was: its retired replicas first, then the new ones go."""
    model = plan.model
    if plan.start_old is not None:
        for _ in range(retired):
            try:
                pools.add(pool, await plan.start_old(), plan.old_capacity)
            except ReplicaStartFailed as exc:  # serve on with fewer; the log says why
                log.error("restoring a replica of %s during a rollback failed: %s", model, exc)
    for replica in started:
        await pools.drain(pool, replica)
    await fleet.stop_many(started)
    if fresh:
        if pools.gateway.pool(model) is pool:
            pools.gateway.remove_pool(model)
        await pool.close()
