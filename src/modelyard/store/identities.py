"""Deployment identities: table ``identities`` and the store's cache of it.

Every prediction, aggregate and bucket row carries the integer id of its deployment; the
identity (model, build, deployment CRNs) is stored once. Identities are never deleted or changed
once stored, so the cache cannot go stale; a miss just reloads. A model- or build-level query
resolves to deployment ids from this small table (``select``).
"""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.errors import Conflict, InvalidInput
from modelyard.store.base import Identity, Query
from modelyard.store.sqltypes import Cursor, Execute

__all__ = ["Identities", "check_identity"]


def check_identity(identity: object) -> Identity:
    """``identity`` if it is an Identity of three CRN strings; InvalidInput naming the field."""
    if not isinstance(identity, Identity):
        raise InvalidInput(
            f"identity {identity!r} must be an Identity(model_crn, build_crn, deployment_crn)"
        )
    for name in ("model_crn", "build_crn", "deployment_crn"):
        value = getattr(identity, name)
        if not isinstance(value, str) or not value or "\x00" in value:
            raise InvalidInput(f"identity {name}={value!r} must be a non-empty CRN string")
    return identity


class Identities:
    """deployment CRN -> (id, identity) and id -> identity, read through ``execute``."""

    def __init__(self, execute: Execute) -> None:
        self.by_crn: dict[str, tuple[int, Identity]] = {}
        self.by_id: dict[int, Identity] = {}
        self._execute = execute

    def load(self, cur: Cursor) -> None:
        """(Re)load every identity stored."""
        rows = self._execute(
            cur, "SELECT id, deployment_crn, build_crn, model_crn FROM identities", ()
        ).fetchall()
        for dep_id, deployment, build, model in rows:
            identity = Identity(model_crn=model, build_crn=build, deployment_crn=deployment)
            self.by_crn[deployment] = (int(dep_id), identity)
            self.by_id[int(dep_id)] = identity

    def ensure(self, cur: Cursor, identity: Identity) -> tuple[int, bool]:
        """The id of ``identity`` (registering it), and whether the cache must learn it."""
        check_identity(identity)
        cached = self.by_crn.get(identity.deployment_crn)
        if cached is None:
            self._execute(
                cur,
                "INSERT INTO identities (deployment_crn, build_crn, model_crn) VALUES (?, ?, ?) "
                "ON CONFLICT (deployment_crn) DO NOTHING",
                (identity.deployment_crn, identity.build_crn, identity.model_crn),
            )
            row = self._execute(
                cur,
                "SELECT id, build_crn, model_crn FROM identities WHERE deployment_crn = ?",
                (identity.deployment_crn,),
            ).fetchone()
            stored = Identity(
                model_crn=row[2], build_crn=row[1], deployment_crn=identity.deployment_crn
            )
            cached = (int(row[0]), stored)
            fresh = True
        else:
            fresh = False
        if cached[1] != identity:
            raise Conflict(
                f"deployment {identity.deployment_crn!r} is registered with build "
                f"{cached[1].build_crn!r} and model {cached[1].model_crn!r}, not build "
                f"{identity.build_crn!r} and model {identity.model_crn!r}; a deployment belongs "
                "to exactly one build and model",
                deployment_crn=identity.deployment_crn,
            )
        return cached[0], fresh

    def learn(self, identities: Sequence[tuple[int, Identity]]) -> None:
        """Cache identities once the transaction that registered them has committed."""
        for dep_id, identity in identities:
            self.by_crn[identity.deployment_crn] = (dep_id, identity)
            self.by_id[dep_id] = identity

    def get(self, cur: Cursor, dep_id: int) -> Identity:
        """The identity of deployment id ``dep_id`` (reloading on a miss)."""
        identity = self.by_id.get(dep_id)
        if identity is None:
            self.load(cur)
            identity = self.by_id[dep_id]
        return identity

    def select(self, cur: Cursor, query: Query) -> list[int]:
        """Ids of the deployments a query selects; InvalidInput naming unknown identifiers."""
        wanted = (
            ("model_crn", query.model_crn),
            ("build_crn", query.build_crn),
            ("deployment_crn", query.deployment_crn),
        )

        def unknown() -> list[str]:
            identities = list(self.by_id.values())  # a snapshot: other threads may add
            known = {name: {getattr(i, name) for i in identities} for name, _ in wanted}
            return [
                f"{name}={value!r}" for name, value in wanted if value and value not in known[name]
            ]

        if unknown():
            self.load(cur)
            missing = unknown()
            if missing:
                raise InvalidInput(
                    f"unknown identifiers: {', '.join(missing)}; pass identifiers of "
                    "deployments that have recorded metrics",
                    unknown=missing,
                )
        return sorted(
            dep_id
            for dep_id, identity in list(self.by_id.items())
            if all(value is None or getattr(identity, name) == value for name, value in wanted)
        )
