"""A deployment's own ``run`` key, handed to its replicas in their environment.

A replica's code calls back into the server (``track_delayed_metrics``, ``read_metrics``) with
``MODELYARD_URL`` and ``MODELYARD_API_KEY``. The key is minted for one deployment on this server
when its first replica starts here (role ``run``, scope = the model's CRN: an operator of that
model's project on the metrics and monitor routes, its own model only; ``web/access.py``), shared
by that deployment's replicas, and revoked as soon as none of them runs here any more (the
deployment was replaced, stopped, scaled to zero or deleted, or the server stops). A new replica
after that gets a new key. Tokens live only in this process's memory and in the replicas'
environments. A server killed with SIGKILL cannot revoke; its next start (same home and host)
revokes the keys an earlier life left (``revoke_leftovers``).

Blocking (registry writes): the controller calls these on a worker thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from modelyard.errors import ModelyardError
from modelyard.registry import Deployment, Model, Registry, Role

__all__ = ["DeploymentKeys"]

log = logging.getLogger("modelyard.controller")


@dataclass
class _Minted:
    key_id: str
    token: str
    holders: set[str] = field(default_factory=set)  # replica ids


class DeploymentKeys:
    """Run keys by deployment CRN for the replicas ``owner`` (this server) starts."""

    def __init__(self, registry: Registry, server_url: str, owner: str) -> None:
        self.registry = registry
        self.server_url = server_url
        self.owner = owner
        self._lock = threading.Lock()
        self._minted: dict[str, _Minted] = {}  # deployment CRN -> its key
        self._deployment_of: dict[str, str] = {}  # replica id -> deployment CRN

    def _name(self, deployment: Deployment) -> str:
        return f"replicas of {deployment.crn.rsplit('/', 1)[-1]} {self._suffix}"

    @property
    def _suffix(self) -> str:
        return f"(server {self.owner})"

    def acquire(self, model: Model, deployment: Deployment, replica_id: str) -> Mapping[str, str]:
        """The environment replica ``replica_id`` of ``deployment`` gets: this server's URL and
        the deployment's key (minted now if no replica of it holds one)."""
        with self._lock:
            minted = self._minted.get(deployment.crn)
            if minted is None:
                key, token = self.registry.create_api_key(
                    self._name(deployment), role=Role.RUN.value, scope=model.crn
                )
                minted = self._minted[deployment.crn] = _Minted(key.id, token)
            minted.holders.add(replica_id)
            self._deployment_of[replica_id] = deployment.crn
            return {"MODELYARD_URL": self.server_url, "MODELYARD_API_KEY": minted.token}

    def release(self, replica_id: str) -> None:
        """Replica ``replica_id`` stopped: revoke its deployment's key if it was the last."""
        with self._lock:
            crn = self._deployment_of.pop(replica_id, None)
            minted = None if crn is None else self._minted.get(crn)
            if crn is None or minted is None:
                return
            minted.holders.discard(replica_id)
            if minted.holders:
                return
            del self._minted[crn]
        self._revoke(minted.key_id, crn)

    def close(self) -> None:
        """Revoke every key still held (the server stops)."""
        with self._lock:
            left = list(self._minted.items())
            self._minted.clear()
            self._deployment_of.clear()
        for crn, minted in left:
            self._revoke(minted.key_id, crn)

    def revoke_leftovers(self) -> int:
        """Revoke the deployment keys an earlier life of this server (same ``owner``) left
        unrevoked (it was killed); returns how many. Call before any replica starts."""
        count = 0
        for key in self.registry.list_api_keys():
            if key.role is Role.RUN and key.revoked_ms is None and key.name.endswith(self._suffix):
                self._revoke(key.id, key.scope or "?")
                count += 1
        return count

    def held(self) -> dict[str, str]:
        """Deployment CRN -> key id of the keys held now (for tests and diagnostics)."""
        with self._lock:
            return {crn: minted.key_id for crn, minted in self._minted.items()}

    def _revoke(self, key_id: str, crn: str) -> None:
        try:
            self.registry.revoke_api_key(key_id)
        except ModelyardError as exc:  # the database is down: the key expires in a year anyway
            log.warning("could not revoke the run key %s of %s: %s", key_id, crn, exc)
