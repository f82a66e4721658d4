"""Builds and deployments of models.

A build is immutable once recorded. A deployment runs one successful build of its model; its
state moves between ``deploying``, ``active``, ``stopped``, ``replaced`` and ``failed``. At most
one deployment per model is ``active``: the transaction that activates one marks the previous
active one ``replaced`` (a partial unique index backs this up in the database).

Each new deployment's identity (model, build, deployment CRNs) is registered with the metrics
store before the deployment row is written, so records and aggregates for it are accepted and
``store.resolve`` knows it as soon as the deployment exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.ids import check_crn, new_crn
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._models import find_model
from modelyard.registry._records import Build, Deployment, DeploymentState, Model
from modelyard.specs.checks import (
    check_cpus,
    check_env,
    check_memory,
    check_replicas,
    encode_json,
)
from modelyard.specs.deploy import BuildSpec
from modelyard.specs.secret_names import check_secret_names
from modelyard.store.base import Identity

__all__ = ["UNSET", "Builds", "Deployments", "check_state"]

_BUILD_COLUMNS = (
    "crn, model_crn, digest, file, function, batch_function, python, env_key, ok, error, "
    "log_path, example, requirements, created_ms, source"
)
_DEPLOYMENT_COLUMNS = (
    "crn, model_crn, build_crn, replicas, env, memory_bytes, cpus, state, created_ms, updated_ms, "
    "secrets"
)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _build(row: Any) -> Build:
    return Build(
        crn=row[0],
        model_crn=row[1],
        digest=row[2],
        file=row[3],
        function=row[4],
        batch_function=row[5],
        python=row[6],
        env_key=row[7],
        ok=bool(row[8]),
        error=row[9],
        log_path=row[10],
        example=None if row[11] is None else orjson.loads(row[11]),
        requirements=row[12],
        created_ms=int(row[13]),
        source=None if row[14] is None else orjson.loads(row[14]),
    )


def _deployment(row: Any) -> Deployment:
    return Deployment(
        crn=row[0],
        model_crn=row[1],
        build_crn=row[2],
        replicas=int(row[3]),
        env=orjson.loads(row[4]),
        memory_bytes=None if row[5] is None else int(row[5]),
        cpus=None if row[6] is None else float(row[6]),
        state=DeploymentState(row[7]),
        created_ms=int(row[8]),
        updated_ms=int(row[9]),
        secrets=tuple(orjson.loads(row[10])),
    )


def check_state(state: object) -> DeploymentState:
    if isinstance(state, str) and state in {s.value for s in DeploymentState}:
        return DeploymentState(state)
    raise InvalidInput(
        f"deployment state {state!r} is not accepted; accepted: "
        f"{', '.join(s.value for s in DeploymentState)}",
        argument="state",
    )


def find_build(db: Db, cur: Cursor, crn: object) -> Build:
    crn = check_crn(crn, "build", "build")
    row = db.exec(cur, f"SELECT {_BUILD_COLUMNS} FROM builds WHERE crn = ?", (crn,)).fetchone()
    if row is None:
        raise NotFound(
            f"build {crn!r} is not registered; list_builds(model) shows a model's builds",
            build_crn=crn,
        )
    return _build(row)


def find_deployment(db: Db, cur: Cursor, crn: object, *, lock: bool = False) -> Deployment:
    crn = check_crn(crn, "deployment", "deployment")
    tail = db.for_update if lock else ""
    row = db.exec(
        cur, f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments WHERE crn = ?{tail}", (crn,)
    ).fetchone()
    if row is None:
        raise NotFound(
            f"deployment {crn!r} is not registered; list_deployments() shows the known ones",
            deployment_crn=crn,
        )
    return _deployment(row)


class Builds:
    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    def add(self, model: str, spec: BuildSpec) -> Build:
        if not isinstance(spec, BuildSpec):
            raise InvalidInput(
                f"spec={spec!r:.200} is not accepted; expected a BuildSpec "
                "(modelyard.specs.BuildSpec)"
            )
        when = self._now() if spec.created_ms is None else spec.created_ms
        build_crn = new_crn("build") if spec.crn is None else spec.crn

        def insert(cur: Cursor) -> Build:
            owner = find_model(self._db, cur, model)
            inserted = self._db.exec(
                cur,
                f"INSERT INTO builds ({_BUILD_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (crn) DO NOTHING",
                (
                    build_crn,
                    owner.crn,
                    spec.digest,
                    spec.file,
                    spec.function,
                    spec.batch_function,
                    spec.python,
                    spec.env_key,
                    int(spec.ok),
                    spec.error,
                    spec.log_path,
                    spec.example_json,
                    spec.requirements,
                    when,
                    spec.source_json,
                ),
            ).rowcount
            if inserted != 1:
                raise Conflict(
                    f"build {build_crn!r} is already registered; a build is recorded once "
                    "(omit crn to mint a new one)",
                    build_crn=build_crn,
                )
            return find_build(self._db, cur, build_crn)

        return self._db.write(insert)

    def get(self, crn: str) -> Build:
        with self._db.read() as cur:
            return find_build(self._db, cur, crn)

    def ids_with_prefix(self, prefix: str, model: str | None, limit: int) -> list[str]:
        """CRNs of the builds (of ``model`` if given) whose uuid starts with ``prefix`` (checked
        by ``check_prefix``: hex digits and hyphens, so no LIKE wildcard), at most ``limit``."""
        where, params = "crn LIKE ?", [f"crn:modelyard:build/{prefix}%"]
        with self._db.read() as cur:
            if model is not None:
                where += " AND model_crn = ?"
                params.append(find_model(self._db, cur, model).crn)
            rows = self._db.exec(
                cur,
                f"SELECT crn FROM builds WHERE {where} ORDER BY crn LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def list(self, model: str) -> list[Build]:
        with self._db.read() as cur:
            owner = find_model(self._db, cur, model)
            rows = self._db.exec(
                cur,
                f"SELECT {_BUILD_COLUMNS} FROM builds WHERE model_crn = ? ORDER BY seq DESC",
                (owner.crn,),
            ).fetchall()
        return [_build(row) for row in rows]


class Deployments:
    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    def add(
        self,
        model: str,
        build: str,
        replicas: int = 1,
        env: dict[str, str] | None = None,
        memory_bytes: int | None = None,
        cpus: float | None = None,
        secrets: Iterable[str] | None = None,
    ) -> Deployment:
        replicas = check_replicas(replicas)
        env = check_env(env)
        memory_bytes = check_memory(memory_bytes)
        cpus = check_cpus(cpus)
        names = check_secret_names(secrets)
        both = sorted(set(names) & set(env))
        if both:
            raise InvalidInput(
                f"{both[0]!r} is both in env and in secrets; a variable comes from one of them: "
                "drop it from env (or from secrets)",
                argument="secrets",
            )
        with self._db.read() as cur:
            owner, built = self._deployable(cur, model, build)
        crn = new_crn("deployment")
        # Registered first: a failure below leaves a harmless known identity, never a deployment
        # whose records the store would refuse.
        self._db.store.register_identity(Identity(owner.crn, built.crn, crn))
        env_text = encode_json("env", env)
        secrets_text = encode_json("secrets", list(names))

        def insert(cur: Cursor) -> Deployment:
            owner, built = self._deployable(cur, model, build)
            now = self._now()
            self._db.exec(
                cur,
                f"INSERT INTO deployments ({_DEPLOYMENT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    crn,
                    owner.crn,
                    built.crn,
                    replicas,
                    env_text,
                    memory_bytes,
                    cpus,
                    DeploymentState.DEPLOYING.value,
                    now,
                    now,
                    secrets_text,
                ),
            )
            return find_deployment(self._db, cur, crn)

        return self._db.write(insert)

    def _deployable(self, cur: Cursor, model: str, build: str) -> tuple[Model, Build]:
        owner = find_model(self._db, cur, model)
        built = find_build(self._db, cur, build)
        if built.model_crn != owner.crn:
            raise InvalidInput(
                f"build {built.crn!r} belongs to model {built.model_crn!r}, not to model "
                f"{owner.name!r}; deploy one of list_builds({owner.name!r})",
                build_crn=built.crn,
            )
        if not built.ok:
            raise Conflict(
                f"build {built.crn!r} failed ({built.error or 'no error recorded'}); only a "
                "successful build can be deployed: fix the build and build again",
                build_crn=built.crn,
            )
        return owner, built

    def get(self, crn: str) -> Deployment:
        with self._db.read() as cur:
            return find_deployment(self._db, cur, crn)

    def list(
        self, model: str | None = None, states: Iterable[str] | None = None
    ) -> list[Deployment]:
        where: list[str] = []
        params: list[Any] = []
        if isinstance(states, str):
            states = [states]
        chosen = None if states is None else sorted({check_state(s).value for s in states})
        with self._db.read() as cur:
            if model is not None:
                where.append("model_crn = ?")
                params.append(find_model(self._db, cur, model).crn)
            if chosen is not None:
                if not chosen:
                    return []
                where.append(f"state IN ({','.join('?' * len(chosen))})")
                params.extend(chosen)
            clause = f" WHERE {' AND '.join(where)}" if where else ""
            rows = self._db.exec(
                cur,
                f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments{clause} ORDER BY seq DESC",
                params,
            ).fetchall()
        return [_deployment(row) for row in rows]

    def active(self, model: str) -> Deployment | None:
        with self._db.read() as cur:
            owner = find_model(self._db, cur, model)
            row = self._db.exec(
                cur,
                f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments WHERE model_crn = ? AND state = ?",
                (owner.crn, DeploymentState.ACTIVE.value),
            ).fetchone()
        return None if row is None else _deployment(row)

    def set_state(self, crn: str, state: str) -> Deployment:
        chosen = check_state(state)

        def change(cur: Cursor) -> Deployment:
            current = find_deployment(self._db, cur, crn)
            # Lock the model row first: concurrent activations of one model's deployments then
            # queue here, and the second one sees (and replaces) what the first made active.
            find_model(self._db, cur, current.model_crn, lock=True)
            now = self._now()
            if chosen is DeploymentState.ACTIVE:
                self._db.exec(
                    cur,
                    "UPDATE deployments SET state = ?, updated_ms = ? "
                    "WHERE model_crn = ? AND state = ? AND crn <> ?",
                    (
                        DeploymentState.REPLACED.value,
                        now,
                        current.model_crn,
                        DeploymentState.ACTIVE.value,
                        current.crn,
                    ),
                )
            self._db.exec(
                cur,
                "UPDATE deployments SET state = ?, updated_ms = ? WHERE crn = ?",
                (chosen.value, now, current.crn),
            )
            return find_deployment(self._db, cur, current.crn)

        return self._db.write(change)

    def update(
        self,
        crn: str,
        *,
        replicas: Any = UNSET,
        env: Any = UNSET,
        memory_bytes: Any = UNSET,
        cpus: Any = UNSET,
    ) -> Deployment:
        changes: dict[str, Any] = {}
        if replicas is not UNSET:
            changes["replicas"] = check_replicas(replicas)
        if env is not UNSET:
            changes["env"] = encode_json("env", check_env(env))
        if memory_bytes is not UNSET:
            changes["memory_bytes"] = check_memory(memory_bytes)
        if cpus is not UNSET:
            changes["cpus"] = check_cpus(cpus)

        def update(cur: Cursor) -> Deployment:
            current = find_deployment(self._db, cur, crn, lock=True)
            if not changes:
                return current
            assignments = ", ".join(f"{column} = ?" for column in changes)
            self._db.exec(
                cur,
                f"UPDATE deployments SET {assignments}, updated_ms = ? WHERE crn = ?",
                (*changes.values(), self._now(), current.crn),
            )
            return find_deployment(self._db, cur, current.crn)

        return self._db.write(update)
