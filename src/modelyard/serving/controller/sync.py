"""Keeping this server's replicas in step with the registry: at start (``restore``) and, while the
server runs, every few seconds (the watcher), so a deploy, rollback, scale, stop, start or delete
made through another server on the same database reaches this one without a restart.

The registry says what should run: each model's ``active`` deployment with its replica count
(each server runs that many of its own). A model is *in step* here when the gateway has its pool
and exactly that many replicas of that deployment run here (or, with no active deployment, none
and no pool). The watcher reads the registry every ``interval_s`` (two short queries) and, for
each model out of step, converges it on a task of its own, under the model's lock, reading the
registry again once it holds the lock (so a change made through this server is never undone by
an older read):

- another deployment runs here: roll to the active one, one replica at a time, as a deploy does
  (no request fails; if a new replica does not become healthy the old ones keep serving);
- too few or too many replicas of the active one: start or drain and stop the difference;
- nothing active (stopped or deleted elsewhere): drain and stop, the pool goes (503);
- a build this server lacks is fetched and prepared first (``prepare.py``): the model is shown
  ``preparing`` meanwhile, while whatever served it here goes on serving.

A model that fails to converge (its replicas do not become healthy here) is tried again with a
growing back-off (5 s to 5 min) until the registry asks for something else. Models with an
operation of this server under way (lock held) are left alone until it finishes. A database that
cannot be reached is logged once and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from modelyard.backoff import Backoff
from modelyard.errors import Conflict, ModelyardError, NotFound
from modelyard.registry import Build, Deployment, DeploymentState, Model
from modelyard.serving.controller.replica_specs import identity

if TYPE_CHECKING:
    from modelyard.serving.controller.controller import Controller

__all__ = ["RETRY", "Sync"]

log = logging.getLogger("modelyard.controller")

RETRY = Backoff(base_s=5.0, cap_s=300.0)


class Sync:
    """Converges ``controller``'s replicas on the registry: ``restore`` once, ``start`` a
    watcher, ``stop`` it."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller
        self._task: asyncio.Task[None] | None = None
        self._converging: dict[str, asyncio.Task[None]] = {}
        # model name -> (what it was asked to run, failed attempts, monotonic time of next try)
        self._failed: dict[str, tuple[tuple[str, int], int, float]] = {}
        self._unreachable = False
        self.interval_s = 0.0

    # -- at start -------------------------------------------------------------------------------
    async def restore(self) -> dict[str, str | None]:
        """``Controller.restore``: reap leftovers, then converge every model once."""
        c = self._c
        reap = getattr(c.runtime, "reap_leftovers", None)
        if callable(reap) and not c.runtime.replicas():
            try:
                killed = await asyncio.to_thread(reap)
            except Conflict as exc:  # something (a job run) started first: leave them be
                log.warning("not reaping groups left by a previous server: %s", exc.message)
                killed = []
            if killed:
                log.warning(
                    "killed %d replica or run groups left by a previous server", len(killed)
                )
        models: list[Model] = await c._reg(c.registry.list_models)
        results = await asyncio.gather(*(self._restore_one(m) for m in models))
        return {m.name: error for m, (tried, error) in zip(models, results, strict=True) if tried}

    async def _restore_one(self, model: Model) -> tuple[bool, str | None]:
        """(whether the model had an active deployment to restore, why it failed or None)."""
        c = self._c
        async with c._locks[model.name]:
            cut_short: list[Deployment] = await c._reg(
                c.registry.list_deployments, model.crn, [DeploymentState.DEPLOYING]
            )
            for deployment in cut_short:
                await c._reg(
                    c.registry.set_deployment_state, deployment.crn, DeploymentState.FAILED
                )
            active: Deployment | None = await c._reg(c.registry.active_deployment, model.crn)
            if active is None:
                return False, None
            error = await self._converge_locked(model, active)
            if error is not None:
                log.error("restoring %s: %s", model.name, error)
            return True, error

    # -- converging one model -------------------------------------------------------------------
    async def _converge_locked(self, model: Model, wanted: Deployment | None) -> str | None:
        """Make what runs here for ``model`` match ``wanted`` (under the model's lock); None
        when it does, else why not (the model keeps whatever still serves it)."""
        c = self._c
        name = model.name
        running = c._fleet.of_model(name)
        if wanted is None:
            if running or c.gateway.pool(name) is not None:
                log.info("model %s: no active deployment any more; stopping it here", name)
                await c._take_down(name)
            return None
        try:
            built: Build = await c._reg(c.registry.get_build, wanted.build_crn)
            if any(r.deployment_crn != wanted.crn for r in running):
                log.info("model %s: rolling to deployment %s here", name, wanted.crn)
                await c._roll(model, built, wanted, None)
                return None
            pool = c.gateway.pool(name)
            if pool is None or (not running and pool.identity != identity(wanted)):
                previous, pool = pool, c._pools.make(identity(wanted), model.settings)
                c.gateway.set_pool(name, pool)  # 503 until a replica joins
                if previous is not None:  # an empty pool of an older deployment
                    await c._pools.retire(previous, [])
            if len(running) < wanted.replicas:
                built = await c._prepare.prepare(name, built)
                failed = await c._starts.start_into(
                    pool, model, built, wanted, wanted.replicas - len(running)
                )
                if failed:
                    return "; ".join(error.message for error in failed)
            elif len(running) > wanted.replicas:
                extra = running[wanted.replicas :]
                await asyncio.gather(*(c._pools.drain(pool, r) for r in extra))
                await c._fleet.stop_many(extra)
        except ModelyardError as exc:
            return exc.message
        return None

    def in_step(self, name: str, wanted: Deployment | None) -> bool:
        """Whether what runs here for model ``name`` is what ``wanted`` asks for."""
        c = self._c
        running = c._fleet.of_model(name)
        if wanted is None:
            return not running and c.gateway.pool(name) is None
        pool = c.gateway.pool(name)
        return (
            pool is not None
            and pool.identity == identity(wanted)
            and len(running) == wanted.replicas
            and all(r.deployment_crn == wanted.crn for r in running)
        )

    async def converge(self, name: str) -> str | None:
        """Converge model ``name`` now, reading the registry under its lock; None when in
        step, else why not. A model deleted from the registry is taken down here."""
        c = self._c
        async with c._locks[name]:
            try:
                model: Model = await c._reg(c.registry.get_model, name)
            except NotFound:
                if c._fleet.of_model(name) or c.gateway.pool(name) is not None:
                    log.info("model %s was deleted; stopping it here", name)
                    await c._take_down(name)
                return None
            wanted: Deployment | None = await c._reg(c.registry.active_deployment, model.crn)
            error = await self._converge_locked(model, wanted)
            key = ("" if wanted is None else wanted.crn, 0 if wanted is None else wanted.replicas)
            if error is None:
                self._failed.pop(name, None)
            else:
                attempts = self._failed[name][1] + 1 if name in self._failed else 1
                retry_in = RETRY.delay(attempts)
                self._failed[name] = (key, attempts, time.monotonic() + retry_in)
                log.error("model %s (again in %.0fs): %s", name, retry_in, error)
            return error

    # -- the watcher ----------------------------------------------------------------------------
    def start(self, interval_s: float) -> None:
        """Look every ``interval_s`` seconds (0: never)."""
        self.interval_s = float(interval_s)
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop looking, and cancel the convergences under way (shutdown stops everything)."""
        tasks = [t for t in [self._task, *self._converging.values()] if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except ModelyardError as exc:
                if not self._unreachable:
                    log.warning("watching the registry for other servers' changes: %s", exc)
                self._unreachable = True
            except Exception:
                log.exception("watching the registry for other servers' changes failed")
            else:
                self._unreachable = False

    async def tick(self) -> list[str]:
        """One look: start converging every model out of step; return their names."""
        c = self._c
        models, actives = await asyncio.to_thread(self._read)
        wanted = {d.model_crn: d for d in actives}
        now = time.monotonic()
        started: list[str] = []
        names = {m.name for m in models}
        gone = {r.model for r in c._fleet.replicas.values()} | set(c.gateway.models())
        for name, active in [(m.name, wanted.get(m.crn)) for m in models] + [
            (name, None) for name in sorted(gone - names)
        ]:
            if self.in_step(name, active):
                self._failed.pop(name, None)
                continue
            key = ("" if active is None else active.crn, 0 if active is None else active.replicas)
            failed = self._failed.get(name)
            if failed is not None and failed[0] == key and now < failed[2]:
                continue  # failed for this very request: wait for the back-off
            if name in self._converging or c._locks[name].locked():
                continue  # an operation of this server, or a convergence, is under way
            task = asyncio.get_running_loop().create_task(self._run(name))
            self._converging[name] = task
            started.append(name)
        return started

    def _read(self) -> tuple[list[Model], list[Deployment]]:
        registry = self._c.registry
        return registry.list_models(), registry.list_deployments(None, [DeploymentState.ACTIVE])

    async def _run(self, name: str) -> None:
        try:
            await self.converge(name)
        except ModelyardError as exc:
            log.warning("model %s: %s", name, exc)
        except Exception:
            log.exception("converging model %s failed", name)
        finally:
            self._converging.pop(name, None)
