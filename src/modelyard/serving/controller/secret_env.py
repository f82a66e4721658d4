"""The project secrets a deployment names, as environment variables for its replicas.

Read (decrypted) on the server when replicas start, once per rollout or scale however many
replicas it starts (``ReplicaStarter.starter`` makes one ``DeploymentSecrets`` each time), and
recorded in the audit log by ``registry.read_secrets`` (names and the deployment, never values).
The values live only in this object's memory and in the replicas' environments: never in the
replica spec's logs, the registry's deployment row (names only) or an error message.

A secret missing when a replica starts (deleted after the deploy was checked) or one this
server's key cannot decrypt fails that replica's start with ``ReplicaStartFailed`` naming the
secret and the project, so the rollout stops and the deployment that served goes on serving.
"""

from __future__ import annotations

import asyncio

from modelyard.errors import NotFound
from modelyard.registry import Deployment, Model, Registry, SecretKeyError, read_secrets
from modelyard.serving.controller.fleet import ReplicaStartFailed

__all__ = ["DeploymentSecrets"]


class DeploymentSecrets:
    """``await env()``: ``{name: value}`` of ``deployment.secrets`` in ``model``'s project, read
    on a worker thread at the first call and kept for the next ones (concurrent first calls
    read once)."""

    def __init__(self, registry: Registry, model: Model, deployment: Deployment) -> None:
        self._registry = registry
        self._model = model
        self._deployment = deployment
        self._values: dict[str, str] | None = None
        self._lock = asyncio.Lock()

    async def env(self) -> dict[str, str]:
        names = self._deployment.secrets
        if not names:
            return {}
        async with self._lock:
            if self._values is None:
                self._values = await asyncio.to_thread(self._read)
            return dict(self._values)

    def _read(self) -> dict[str, str]:
        model, deployment = self._model, self._deployment
        try:
            return read_secrets(
                self._registry,
                model.project_crn,
                deployment.secrets,
                object=model.name,
                for_=deployment.crn,
            )
        except (NotFound, SecretKeyError) as exc:
            raise ReplicaStartFailed(
                f"a replica of model {model.name!r} cannot start: {exc.message}",
                log_tail="",
                model=model.name,
                deployment_crn=deployment.crn,
            ) from None
