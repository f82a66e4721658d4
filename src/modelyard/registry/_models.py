"""Models: a name, a CRN, serving settings and the hash of the access key that selects them.

``by_access_key`` is on the predict path of every request: answers are kept in a ``TTLCache``
(hash -> model) that this process clears for a model whenever it rotates, updates or deletes it;
other processes see such changes once their entry is older than the cache's TTL (2 s default).
When the database cannot be read (``StoreUnavailable``: PostgreSQL down or restarting), the last
known answer is used instead (``TTLCache.stale``), so predictions go on through a store outage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelyard.errors import Conflict, InvalidInput, NotFound, StoreUnavailable, Unauthorized
from modelyard.ids import new_crn
from modelyard.registry._db import Clock, Cursor, Db
from modelyard.registry._keys import (
    ACCESS_KEY_PREFIX,
    API_KEY_PREFIX,
    display_prefix,
    hash_token,
    new_token,
    same_hash,
)
from modelyard.registry._projects import find_default, find_project
from modelyard.registry._records import DeploymentState, Model
from modelyard.registry._settings import ModelSettings
from modelyard.registry._snapshots import drop_unreferenced
from modelyard.specs.checks import check_model_name
from modelyard.ttlcache import TTLCache

__all__ = ["Models", "find_model", "project_of"]

_COLUMNS = "crn, name, access_key_prefix, settings, created_ms, updated_ms, project_crn"
_BUSY = (DeploymentState.ACTIVE.value, DeploymentState.DEPLOYING.value)


def _model(row: Any) -> Model:
    return Model(
        name=row[1],
        crn=row[0],
        settings=ModelSettings.from_json(row[3]),
        access_key_prefix=row[2],
        created_ms=int(row[4]),
        updated_ms=int(row[5]),
        project_crn=row[6],
    )


def _check_ref(ref: object) -> str:
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(
            f"model {ref!r} is not accepted; expected a model name such as 'churn' or a model "
            "CRN 'crn:modelyard:model/<uuid>'",
            model=repr(ref),
        )
    return ref


def find_model(db: Db, cur: Cursor, ref: object, *, lock: bool = False) -> Model:
    """The model named ``ref`` (a name or a CRN); NotFound naming it and some known names."""
    ref = _check_ref(ref)
    column = "crn" if ref.startswith("crn:") else "name"
    tail = db.for_update if lock else ""
    row = db.exec(cur, f"SELECT {_COLUMNS} FROM models WHERE {column} = ?{tail}", (ref,)).fetchone()
    if row is None:
        names = [r[0] for r in db.exec(cur, "SELECT name FROM models ORDER BY name LIMIT 11")]
        known = (
            f"known models: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}"
            if names
            else "no models are registered yet; create one first"
        )
        raise NotFound(f"model {ref!r} is not registered; {known}", model=ref)
    return _model(row)


def project_of(db: Db, cur: Cursor, ref: str | None) -> str | None:
    """The CRN of the project a new model or job goes to: the one ``ref`` names (CRN, uuid,
    ``owner/name`` or a bare name unique on the server; NotFound otherwise), or the default
    project when ``ref`` is None (None itself before the server's first start on version 9:
    ``people.bootstrap`` then moves the row to the default project)."""
    if ref is None:
        default = find_default(db, cur)
        return None if default is None else default.crn
    return find_project(db, cur, ref).crn


def _settings(settings: ModelSettings | Mapping[str, Any] | None) -> ModelSettings:
    if settings is None:
        return ModelSettings()
    if isinstance(settings, ModelSettings):
        return settings
    if isinstance(settings, Mapping):
        return ModelSettings().replace(**settings)
    raise InvalidInput(
        f"settings={settings!r} is not accepted; expected ModelSettings(...), a dict of "
        "setting -> value, or None for the defaults",
        argument="settings",
    )


class Models:
    def __init__(self, db: Db, clock: Clock, cache: TTLCache[Model]) -> None:
        self._db = db
        self._now = clock
        self._cache = cache

    def _forget(self, crn: str) -> None:
        self._cache.discard_where(lambda model: model.crn == crn)

    def create(
        self,
        name: str,
        settings: ModelSettings | Mapping[str, Any] | None = None,
        project_crn: str | None = None,
    ) -> tuple[Model, str]:
        name = check_model_name(name)
        chosen = _settings(settings)
        token = new_token(ACCESS_KEY_PREFIX)
        now = self._now()
        crn = new_crn("model")

        def insert(cur: Cursor) -> Model:
            project = project_of(self._db, cur, project_crn)
            model = Model(name, crn, chosen, display_prefix(token), now, now, project)
            inserted = self._db.exec(
                cur,
                "INSERT INTO models (crn, name, access_key_hash, access_key_prefix, settings, "
                "created_ms, updated_ms, project_crn) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (
                    model.crn,
                    name,
                    hash_token(token),
                    model.access_key_prefix,
                    chosen.to_json(),
                    now,
                    now,
                    project,
                ),
            ).rowcount
            if inserted != 1:
                raise Conflict(
                    f"a model named {name!r} already exists; choose another name, or update, "
                    "redeploy or delete the existing model",
                    model=name,
                )
            return model

        return self._db.write(insert), token

    def get(self, ref: str) -> Model:
        with self._db.read() as cur:
            return find_model(self._db, cur, ref)

    def list(self, project_crn: str | None = None) -> list[Model]:
        where = "" if project_crn is None else " WHERE project_crn = ?"
        with self._db.read() as cur:
            rows = self._db.exec(
                cur,
                f"SELECT {_COLUMNS} FROM models{where} ORDER BY name",
                () if project_crn is None else (project_crn,),
            ).fetchall()
        return [_model(row) for row in rows]

    def update(self, ref: str, changes: dict[str, Any]) -> Model:
        def update(cur: Cursor) -> Model:
            model = find_model(self._db, cur, ref, lock=True)
            settings = model.settings.replace(**changes)
            now = self._now()
            self._db.exec(
                cur,
                "UPDATE models SET settings = ?, updated_ms = ? WHERE crn = ?",
                (settings.to_json(), now, model.crn),
            )
            return Model(
                model.name,
                model.crn,
                settings,
                model.access_key_prefix,
                model.created_ms,
                now,
                model.project_crn,
            )

        updated = self._db.write(update)
        self._forget(updated.crn)
        return updated

    def delete(self, ref: str) -> None:
        def delete(cur: Cursor) -> str:
            model = find_model(self._db, cur, ref, lock=True)
            busy = self._db.exec(
                cur,
                "SELECT crn, state FROM deployments WHERE model_crn = ? AND state IN (?, ?) "
                "ORDER BY seq",
                (model.crn, *_BUSY),
            ).fetchall()
            if busy:
                listed = ", ".join(f"{crn} ({state})" for crn, state in busy)
                raise Conflict(
                    f"model {model.name!r} still has running deployments: {listed}; stop them "
                    "first (set_deployment_state(crn, 'stopped')), then delete the model",
                    model=model.name,
                    deployments=[crn for crn, _ in busy],
                )
            mine = "SELECT crn FROM deployments WHERE model_crn = ?"
            self._db.exec(
                cur, f"DELETE FROM replica_events WHERE deployment_crn IN ({mine})", (model.crn,)
            )
            digests = self._db.exec(
                cur, "SELECT DISTINCT digest FROM builds WHERE model_crn = ?", (model.crn,)
            ).fetchall()
            for table in ("deployments", "builds", "models"):
                column = "crn" if table == "models" else "model_crn"
                self._db.exec(cur, f"DELETE FROM {table} WHERE {column} = ?", (model.crn,))
            # The snapshot archives only its builds ran go with them: the database stays bounded.
            drop_unreferenced(self._db, cur, (str(row[0]) for row in digests))
            return model.crn

        crn = self._db.write(delete)
        self._forget(crn)

    def rotate(self, ref: str) -> str:
        token = new_token(ACCESS_KEY_PREFIX)

        def rotate(cur: Cursor) -> str:
            model = find_model(self._db, cur, ref, lock=True)
            self._db.exec(
                cur,
                "UPDATE models SET access_key_hash = ?, access_key_prefix = ?, updated_ms = ? "
                "WHERE crn = ?",
                (hash_token(token), display_prefix(token), self._now(), model.crn),
            )
            return model.crn

        crn = self._db.write(rotate)
        self._forget(crn)
        return token

    def cached_by_access_key(self, key: object) -> Model | None:
        """The cached answer of ``by_access_key``, or None when it needs the database."""
        if not isinstance(key, str) or not key:
            return None
        return self._cache.get(hash_token(key))

    def by_access_key(self, key: object) -> Model:
        if not isinstance(key, str) or not key:
            raise Unauthorized(
                "no access key was given; send the model's access key as 'accessKey' in the body "
                f"or query (access keys start with {ACCESS_KEY_PREFIX!r})",
                reason="missing",
            )
        digest = hash_token(key)
        generation = self._cache.generation()
        model = self._cache.get(digest)
        if model is not None:
            return model
        try:
            with self._db.read() as cur:
                row = self._db.exec(
                    cur,
                    f"SELECT {_COLUMNS}, access_key_hash FROM models WHERE access_key_hash = ?",
                    (digest,),
                ).fetchone()
        except StoreUnavailable:
            model = self._cache.stale(digest)  # stale if error: the last known answer
            if model is None:
                raise
            return model
        if row is None or not same_hash(row[7], digest):
            self._cache.forget_stale(digest)
            hint = (
                f" (it looks like an API key, which starts with {API_KEY_PREFIX!r}; the access "
                "key names the model and is shown when the model is created or its key rotated)"
                if key.startswith(API_KEY_PREFIX)
                else ""
            )
            raise Unauthorized(
                f"the access key given is unknown: it matches no model{hint}; access keys start "
                f"with {ACCESS_KEY_PREFIX!r}, and a rotated key stops working",
                reason="unknown",
            )
        model = _model(row)
        self._cache.put(digest, model, generation)
        return model
