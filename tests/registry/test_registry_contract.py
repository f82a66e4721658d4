"""The registry contract: every method and every error, on SQLite file, SQLite :memory: and
PostgreSQL (see conftest.py). Clocks are injected, so expiry and cache ages are exact."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidInput, NotFound, StoreUnavailable, Unauthorized
from modelyard.ids import new_crn
from modelyard.registry import (
    YEAR_MS,
    ApiKey,
    Build,
    Deployment,
    DeploymentState,
    Model,
    ModelSettings,
    Registry,
    Role,
)
from modelyard.store import Identity, MetricsStore
from modelyard.store.sqlaccess import reading, sql, transaction

from .conftest import T0, FakeClock, MsClock


def add_build(registry: Registry, model: str, ok: bool = True, **extra: Any) -> Build:
    fields: dict[str, Any] = {
        "digest": hashlib.sha256(new_crn("build").encode()).hexdigest(),
        "file": "predict.py",
        "function": "predict",
        "python": "/usr/bin/python3",
        "env_key": "base",
        "ok": ok,
    }
    fields.update(extra)
    return registry.add_build(model, **fields)


def deployed(registry: Registry, name: str = "churn") -> tuple[Model, Build, Deployment]:
    try:
        model = registry.get_model(name)
    except NotFound:
        model, _ = registry.create_model(name)
    build = add_build(registry, name)
    return model, build, registry.add_deployment(name, build.crn)


def raw_rows(store: MetricsStore, table: str) -> list[tuple[Any, ...]]:
    with reading(store) as cur:
        cur.execute(sql(store, f"SELECT * FROM {table}"))
        return [tuple(row) for row in cur.fetchall()]


# -- models ---------------------------------------------------------------------------------------
def test_create_model_returns_it_with_an_access_key_shown_once(
    registry: Registry, clock: MsClock
) -> None:
    model, key = registry.create_model("churn")
    assert model.name == "churn"
    assert model.crn.startswith("crn:modelyard:model/")
    assert model.settings == ModelSettings()
    assert model.created_ms == model.updated_ms == T0
    assert key.startswith("mya_") and len(key) == 4 + 43
    assert model.access_key_prefix == key[:12]
    assert registry.get_model("churn") == model
    assert registry.get_model(model.crn) == model
    assert registry.model_by_access_key(key) == model
    second, other_key = registry.create_model("churn-2")
    assert other_key != key and second.crn != model.crn


GOOD_NAMES = ["a", "0", "churn-v2", "7-up", "a" * 63, "a-"]
BAD_NAMES = ["", "Churn", "-churn", "churn_v2", "a" * 64, "churn v2", "chürn", "a/b", 5, None]


def test_model_names_must_fit_in_urls(registry: Registry) -> None:
    for name in GOOD_NAMES:
        assert registry.create_model(name)[0].name == name
    for bad in BAD_NAMES:
        with pytest.raises(InvalidInput) as info:
            registry.create_model(bad)  # type: ignore[arg-type]
        assert repr(bad) in str(info.value)
        assert "lowercase letters, digits and '-'" in str(info.value)
    assert sorted(m.name for m in registry.list_models()) == sorted(GOOD_NAMES)


def test_a_duplicate_model_name_is_a_conflict_and_keeps_the_first(registry: Registry) -> None:
    first, key = registry.create_model("churn")
    with pytest.raises(Conflict) as info:
        registry.create_model("churn")
    assert "'churn' already exists" in str(info.value)
    assert info.value.status == 409
    assert registry.list_models() == [first]
    assert registry.model_by_access_key(key) == first


def test_unknown_models_are_not_found_naming_them_and_the_known_ones(registry: Registry) -> None:
    with pytest.raises(NotFound, match="no models are registered yet"):
        registry.get_model("churn")
    registry.create_model("churn")
    registry.create_model("fraud")
    with pytest.raises(NotFound) as info:
        registry.get_model("chrun")
    assert "'chrun'" in str(info.value) and "churn, fraud" in str(info.value)
    with pytest.raises(NotFound, match="crn:modelyard:model/x"):
        registry.get_model("crn:modelyard:model/x")
    with pytest.raises(InvalidInput, match="expected a model name"):
        registry.get_model("")


def test_list_models_is_sorted_by_name_bytewise(registry: Registry) -> None:
    for name in ["zeta", "alpha", "a-1", "a1", "9"]:
        registry.create_model(name)
    assert [m.name for m in registry.list_models()] == sorted(["zeta", "alpha", "a-1", "a1", "9"])


def test_models_are_created_with_given_settings(registry: Registry) -> None:
    chosen = ModelSettings(concurrency=8, auth_required=False, batch_function="predict_batch")
    model, _ = registry.create_model("churn", chosen)
    assert registry.get_model("churn").settings == chosen == model.settings
    as_dict, _ = registry.create_model("fraud", {"track_io": True, "max_batch_size": 64})
    assert registry.get_model("fraud").settings == ModelSettings(track_io=True, max_batch_size=64)
    assert as_dict.settings.track_io is True
    with pytest.raises(InvalidInput, match="unknown model setting"):
        registry.create_model("x", {"concurency": 2})
    with pytest.raises(InvalidInput, match="expected ModelSettings"):
        registry.create_model("y", settings=[("debug", True)])  # type: ignore[arg-type]


def test_update_model_changes_settings_and_is_seen_by_access_key_at_once(
    registry: Registry, clock: MsClock
) -> None:
    model, key = registry.create_model("churn")
    assert registry.model_by_access_key(key).settings.concurrency is None  # now cached
    clock.advance(5000)
    updated = registry.update_model("churn", concurrency=16, request_timeout_s=5)
    assert updated.settings.concurrency == 16
    assert updated.settings.request_timeout_s == 5.0
    assert updated.updated_ms == T0 + 5000 and updated.created_ms == T0
    assert registry.get_model(model.crn) == updated
    assert registry.model_by_access_key(key) == updated
    with pytest.raises(InvalidInput, match="concurrency=0 is out of range"):
        registry.update_model("churn", concurrency=0)
    with pytest.raises(InvalidInput, match=r"unknown model setting.*colour.*accepted: "):
        registry.update_model("churn", colour="red")
    with pytest.raises(NotFound):
        registry.update_model("nope", debug=True)
    assert registry.get_model("churn") == updated


def test_rotating_the_access_key_stops_the_old_one_at_once(registry: Registry) -> None:
    model, old = registry.create_model("churn")
    assert registry.model_by_access_key(old) == model  # cached
    new = registry.rotate_access_key("churn")
    assert new != old and new.startswith("mya_")
    with pytest.raises(Unauthorized, match="unknown"):
        registry.model_by_access_key(old)
    assert registry.model_by_access_key(new).crn == model.crn
    assert registry.get_model("churn").access_key_prefix == new[:12]
    with pytest.raises(NotFound):
        registry.rotate_access_key("nope")


def test_wrong_access_keys_are_unauthorized_without_echoing_them(registry: Registry) -> None:
    registry.create_model("churn")
    api_token = registry.create_api_key("ci")[1]
    guess = "mya_" + "x" * 43
    for key, words in [
        (guess, "unknown"),
        (api_token, "looks like an API key"),
        ("", "no access key was given"),
        (None, "no access key was given"),
    ]:
        with pytest.raises(Unauthorized) as info:
            registry.model_by_access_key(key)  # type: ignore[arg-type]
        message = str(info.value)
        assert words in message
        assert info.value.status == 401
        if key:
            assert key[4:] not in message and key[4:12] not in message


def test_delete_model_removes_its_metadata_but_not_its_metrics(
    registry: Registry, store: MetricsStore
) -> None:
    model, build, deployment = deployed(registry)
    _, key = registry.create_model("other")
    registry.record_event(deployment.crn, "r1", "started")
    registry.set_deployment_state(deployment.crn, "stopped")
    registry.delete_model("churn")
    with pytest.raises(NotFound):
        registry.get_model("churn")
    with pytest.raises(NotFound):
        registry.get_build(build.crn)
    with pytest.raises(NotFound):
        registry.get_deployment(deployment.crn)
    with pytest.raises(NotFound):
        registry.events(deployment.crn)
    assert raw_rows(store, "replica_events") == []
    assert [m.name for m in registry.list_models()] == ["other"]
    assert registry.model_by_access_key(key).name == "other"
    # Recorded metrics keep their identity.
    assert store.resolve(deployment.crn) == Identity(model.crn, build.crn, deployment.crn)
    with pytest.raises(NotFound):
        registry.delete_model("churn")


def test_delete_model_drops_the_snapshot_archives_only_its_builds_ran(
    registry: Registry, store: MetricsStore
) -> None:
    """An archive another model's build shares stays; the model's own goes, chunks included."""
    registry.create_model("churn")
    registry.create_model("other")
    own, shared = (hashlib.sha256(name.encode()).hexdigest() for name in ("own", "shared"))
    for digest in (own, shared):
        registry.snapshots.put(digest, iter([b"a" * 10, b"b" * 10]), "tar")
    add_build(registry, "churn", digest=own)
    add_build(registry, "churn", digest=own)  # a rebuild of the same files
    add_build(registry, "churn", digest=shared)
    add_build(registry, "other", digest=shared)
    registry.delete_model("churn")
    assert registry.snapshots.get(own) is None
    assert registry.snapshots.get(shared) is not None
    assert b"".join(registry.snapshots.read(shared)) == b"a" * 10 + b"b" * 10
    assert {row[2] for row in raw_rows(store, "snapshot_chunks")} == {
        shared
    }  # (upload, seq, digest...)
    registry.delete_model("other")
    assert registry.snapshots.list() == []
    assert raw_rows(store, "snapshot_chunks") == []


@pytest.mark.parametrize("state", ["active", "deploying"])
def test_a_model_with_a_running_deployment_cannot_be_deleted(
    registry: Registry, state: str
) -> None:
    model, _, deployment = deployed(registry)
    registry.set_deployment_state(deployment.crn, state)
    with pytest.raises(Conflict) as info:
        registry.delete_model("churn")
    assert deployment.crn in str(info.value) and "stop them first" in str(info.value)
    assert registry.get_model("churn") == model
    registry.set_deployment_state(deployment.crn, "failed")
    registry.delete_model(model.crn)  # by CRN works too
    assert registry.list_models() == []


def test_deleting_a_model_forgets_its_cached_access_key(registry: Registry) -> None:
    _, key = registry.create_model("churn")
    registry.model_by_access_key(key)
    registry.delete_model("churn")
    with pytest.raises(Unauthorized, match="unknown"):
        registry.model_by_access_key(key)


# -- builds ---------------------------------------------------------------------------------------
def test_builds_keep_every_field(registry: Registry, clock: MsClock, tmp_path: Path) -> None:
    model, _ = registry.create_model("churn")
    crn = new_crn("build")
    build = registry.add_build(
        "churn",
        crn=crn,
        digest="d" * 64,
        file="src/predict.py",
        function="predict",
        batch_function="predict_batch",
        python=tmp_path / "envs" / "k" / "bin" / "python",
        env_key="k" * 64,
        ok=True,
        log_path=tmp_path / "build.log",
        example={"tenure": 3, "plan": "gold", "nested": [1, 2.5, None]},
        requirements="requirements/prod.txt",
    )
    assert build == Build(
        crn=crn,
        model_crn=model.crn,
        digest="d" * 64,
        file="src/predict.py",
        function="predict",
        batch_function="predict_batch",
        python=str(tmp_path / "envs" / "k" / "bin" / "python"),
        env_key="k" * 64,
        ok=True,
        error=None,
        log_path=str(tmp_path / "build.log"),
        example={"tenure": 3, "plan": "gold", "nested": [1, 2.5, None]},
        requirements="requirements/prod.txt",
        created_ms=T0,
    )
    assert registry.get_build(crn) == build
    failed = add_build(registry, model.crn, ok=False, error="ImportError: no module named x")
    assert failed.ok is False and failed.error == "ImportError: no module named x"
    assert failed.crn.startswith("crn:modelyard:build/")
    assert failed.example is None and failed.requirements is None
    assert registry.list_builds("churn") == [failed, build]  # newest first


def test_build_errors(registry: Registry) -> None:
    registry.create_model("churn")
    first = add_build(registry, "churn")
    with pytest.raises(Conflict, match="already registered"):
        add_build(registry, "churn", crn=first.crn)
    with pytest.raises(NotFound, match="'nope'"):
        add_build(registry, "nope")
    with pytest.raises(NotFound, match="not registered"):
        registry.get_build(new_crn("build"))
    with pytest.raises(InvalidInput, match="not a CRN"):
        registry.get_build("b1")
    with pytest.raises(NotFound):
        registry.list_builds("nope")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"requirements": "/etc/passwd"}, "requirements='/etc/passwd' is not a path inside"),
        ({"requirements": "../req.txt"}, "without '..'"),
        ({"file": "C:\\x\\predict.py"}, "is not a path inside the project"),
        ({"function": "not a name"}, "function='not a name' is not a Python function name"),
        ({"batch_function": "1x"}, "batch_function='1x'"),
        ({"example": {"when": object()}}, "cannot be stored as JSON"),
        ({"digest": ""}, "digest='' is not accepted"),
        ({"ok": 1}, "ok=1 is not accepted"),
        ({"created_ms": -5}, "created_ms=-5"),
        ({"crn": "build-7"}, "crn='build-7' is not a CRN"),
    ]
    for extra, words in bad:
        with pytest.raises(InvalidInput) as info:
            add_build(registry, "churn", **extra)
        assert words in str(info.value), (extra, str(info.value))
    assert registry.list_builds("churn") == [first]


# -- deployments ----------------------------------------------------------------------------------
def test_add_deployment_records_it_deploying_and_registers_its_identity(
    registry: Registry, store: MetricsStore
) -> None:
    model, _ = registry.create_model("churn")
    build = add_build(registry, "churn")
    deployment = registry.add_deployment(
        "churn", build.crn, 3, {"MODEL_PATH": "/m", "_X1": ""}, 512 * 1024**2, 1.5
    )
    assert deployment == Deployment(
        crn=deployment.crn,
        model_crn=model.crn,
        build_crn=build.crn,
        replicas=3,
        env={"MODEL_PATH": "/m", "_X1": ""},
        memory_bytes=512 * 1024**2,
        cpus=1.5,
        state=DeploymentState.DEPLOYING,
        created_ms=T0,
        updated_ms=T0,
    )
    assert deployment.crn.startswith("crn:modelyard:deployment/")
    assert registry.get_deployment(deployment.crn) == deployment
    assert store.resolve(deployment.crn) == Identity(model.crn, build.crn, deployment.crn)
    # Aggregates for it are accepted at once.
    store.add_aggregate(deployment.crn, T0, T0 + 1, {"accuracy": 0.9})
    plain = registry.add_deployment(model.crn, build.crn)
    assert (plain.replicas, plain.env, plain.memory_bytes, plain.cpus) == (1, {}, None, None)


def test_deployment_arguments_are_checked(registry: Registry) -> None:
    registry.create_model("churn")
    registry.create_model("fraud")
    build = add_build(registry, "churn")
    failed = add_build(registry, "churn", ok=False, error="boom")
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"replicas": -1}, InvalidInput, "replicas=-1"),
        ({"replicas": 257}, InvalidInput, "from 0 to 256"),
        ({"replicas": 2.0}, InvalidInput, "replicas=2.0"),
        ({"env": {"1X": "a"}}, InvalidInput, "env variable name '1X'"),
        ({"env": {"A-B": "a"}}, InvalidInput, "'A-B'"),
        ({"env": {"A": 1}}, InvalidInput, "env variable A has value 1"),
        ({"env": {"MODELYARD_DEPLOYMENT_CRN": "x"}}, InvalidInput, "set by Modelyard"),
        ({"env": ["A=1"]}, InvalidInput, "expected a dict"),
        ({"memory_bytes": 1024}, InvalidInput, "memory_bytes=1024"),
        ({"memory_bytes": True}, InvalidInput, "memory_bytes=True"),
        ({"cpus": 0}, InvalidInput, "cpus=0"),
        ({"cpus": float("nan")}, InvalidInput, "cpus=nan"),
        ({"build": failed.crn}, Conflict, "only a successful build can be deployed"),
        ({"model": "fraud"}, InvalidInput, "belongs to model"),
        ({"model": "nope"}, NotFound, "'nope'"),
        ({"build": new_crn("build")}, NotFound, "is not registered"),
    ]
    for extra, error, words in cases:
        arguments: dict[str, Any] = {"model": "churn", "build": build.crn, **extra}
        with pytest.raises(error) as info:
            registry.add_deployment(**arguments)
        assert words in str(info.value), (extra, str(info.value))
    assert registry.list_deployments() == []


def test_activating_a_deployment_replaces_the_previous_active_one(
    registry: Registry, clock: MsClock
) -> None:
    _, _, first = deployed(registry)
    _, _, second = deployed(registry)
    _, _, elsewhere = deployed(registry, "fraud")
    assert registry.active_deployment("churn") is None
    registry.set_deployment_state(elsewhere.crn, "active")
    active = registry.set_deployment_state(first.crn, "active")
    assert active.state is DeploymentState.ACTIVE
    assert registry.active_deployment("churn") == active
    clock.advance(10)
    now_active = registry.set_deployment_state(second.crn, DeploymentState.ACTIVE)
    assert registry.active_deployment("churn") == now_active
    replaced = registry.get_deployment(first.crn)
    assert replaced.state is DeploymentState.REPLACED and replaced.updated_ms == T0 + 10
    # Other models keep theirs; re-activating the active one changes nothing else.
    assert registry.active_deployment("fraud") == registry.get_deployment(elsewhere.crn)
    registry.set_deployment_state(second.crn, "active")
    assert [d.crn for d in registry.list_deployments("churn", ["active"])] == [second.crn]
    # Rollback: the replaced one comes back, the other is replaced.
    registry.set_deployment_state(first.crn, "active")
    assert registry.active_deployment("churn").crn == first.crn  # type: ignore[union-attr]
    assert registry.get_deployment(second.crn).state is DeploymentState.REPLACED


def test_the_database_itself_refuses_two_active_deployments(
    registry: Registry, store: MetricsStore
) -> None:
    _, _, first = deployed(registry)
    _, _, second = deployed(registry)
    registry.set_deployment_state(first.crn, "active")

    def force(cur: Any) -> None:
        cur.execute(
            sql(store, "UPDATE deployments SET state = 'active' WHERE crn = ?"), (second.crn,)
        )

    # SQLite's error arrives as StoreUnavailable from IntegrityError, PostgreSQL's as is.
    with pytest.raises(Exception) as info:
        transaction(store, force)
    cause = info.value.__cause__ if isinstance(info.value, StoreUnavailable) else info.value
    assert ("unique" in str(cause).lower() and "model_crn" in str(cause).lower()) or (
        "deployments_one_active" in str(cause)
    )
    assert registry.get_deployment(second.crn).state is DeploymentState.DEPLOYING


def test_deployment_states_and_lookups_are_checked(registry: Registry) -> None:
    _, _, deployment = deployed(registry)
    with pytest.raises(InvalidInput) as info:
        registry.set_deployment_state(deployment.crn, "running")
    assert "'running'" in str(info.value)
    assert "deploying, active, stopped, replaced, failed" in str(info.value)
    with pytest.raises(NotFound, match="not registered"):
        registry.set_deployment_state(new_crn("deployment"), "active")
    with pytest.raises(NotFound):
        registry.get_deployment(new_crn("deployment"))
    with pytest.raises(InvalidInput, match="not a CRN"):
        registry.get_deployment("d-1")
    with pytest.raises(NotFound):
        registry.active_deployment("nope")
    for state in DeploymentState:
        assert registry.set_deployment_state(deployment.crn, state.value).state is state


def test_update_deployment_changes_only_what_is_given(registry: Registry, clock: MsClock) -> None:
    _, _, deployment = deployed(registry)
    registry.update_deployment(deployment.crn, memory_bytes=64 * 1024**2, cpus=2)
    clock.advance(7)
    scaled = registry.update_deployment(deployment.crn, replicas=5)
    assert (scaled.replicas, scaled.memory_bytes, scaled.cpus) == (5, 64 * 1024**2, 2.0)
    assert scaled.updated_ms == T0 + 7 and scaled.created_ms == T0
    unlimited = registry.update_deployment(deployment.crn, memory_bytes=None, env={"A": "1"})
    assert (unlimited.memory_bytes, unlimited.env, unlimited.replicas) == (None, {"A": "1"}, 5)
    assert registry.update_deployment(deployment.crn) == unlimited
    assert registry.get_deployment(deployment.crn) == unlimited
    with pytest.raises(InvalidInput, match="replicas=-2"):
        registry.update_deployment(deployment.crn, replicas=-2)
    with pytest.raises(NotFound):
        registry.update_deployment(new_crn("deployment"), replicas=1)
    assert registry.get_deployment(deployment.crn) == unlimited


def test_list_deployments_filters_by_model_and_state_newest_first(registry: Registry) -> None:
    _, _, a = deployed(registry)
    _, _, b = deployed(registry)
    _, _, c = deployed(registry, "fraud")
    registry.set_deployment_state(a.crn, "active")
    registry.set_deployment_state(c.crn, "failed")
    crns = lambda ds: [d.crn for d in ds]  # noqa: E731
    assert crns(registry.list_deployments()) == [c.crn, b.crn, a.crn]
    assert crns(registry.list_deployments("churn")) == [b.crn, a.crn]
    assert crns(registry.list_deployments(states=["active", "failed"])) == [c.crn, a.crn]
    assert crns(registry.list_deployments("churn", "deploying")) == [b.crn]
    assert registry.list_deployments(states=[]) == []
    with pytest.raises(InvalidInput, match="'dead'"):
        registry.list_deployments(states=["dead"])
    with pytest.raises(NotFound):
        registry.list_deployments("nope")


# -- API keys -------------------------------------------------------------------------------------
def test_api_keys_authenticate_and_expire_after_a_year_by_default(
    registry: Registry, clock: MsClock
) -> None:
    key, token = registry.create_api_key("alice")
    assert token.startswith("myk_") and len(token) == 4 + 43
    assert key.prefix == token[:12]
    assert (key.name, key.role, key.scope) == ("alice", Role.USER, None)
    assert (key.created_ms, key.expires_ms, key.revoked_ms) == (T0, T0 + YEAR_MS, None)
    assert registry.authenticate(token) == key
    clock.advance(YEAR_MS - 1)
    assert registry.authenticate(token) == key
    clock.advance(1)
    with pytest.raises(Unauthorized) as info:
        registry.authenticate(token)
    message = str(info.value)
    assert f"API key {key.id} ('alice') expired at 2027-" in message
    assert token[4:12] not in message
    assert info.value.details["reason"] == "expired"


def test_key_lifetimes_and_roles(registry: Registry, clock: MsClock) -> None:
    m1, _ = registry.create_model("m1")  # a scope names a model, stored as its CRN
    short, token = registry.create_api_key("run-7", role="run", expires_in_ms=1000, scope="m1")
    assert (short.role, short.scope, short.expires_ms) == (Role.RUN, m1.crn, T0 + 1000)
    admin, admin_token = registry.create_api_key("admin", role="admin", expires_in_ms=None)
    assert admin.expires_ms is None
    clock.advance(999)
    registry.authenticate(token)
    clock.advance(1)
    with pytest.raises(Unauthorized, match="expired"):
        registry.authenticate(token)  # was cached: expiry is still checked
    clock.advance(30 * YEAR_MS)
    assert registry.authenticate(admin_token) == admin
    assert not short.active_at(clock()) and admin.active_at(clock())


BAD_KEY_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"role": "root"}, "role='root' is not a role; accepted: admin, user, run"),
    ({"expires_in_ms": None}, "only accepted for admin keys, not for a 'user' key"),
    ({"role": "run", "expires_in_ms": None}, "not for a 'run' key"),
    ({"expires_in_ms": 0}, "expires_in_ms=0"),
    ({"expires_in_ms": 11 * YEAR_MS}, "10 years"),
    ({"expires_in_ms": 1.5}, "expires_in_ms=1.5"),
    ({"expires_in_ms": True}, "expires_in_ms=True"),
    ({"name": ""}, "name='' is not accepted"),
    ({"scope": ""}, "scope='' is not accepted"),
    # a scope names an existing model; run scopes are the runner's, admin keys are never scoped
    ({"scope": "../../"}, "scope='../../' is not an existing model"),
    ({"scope": "crn:modelyard:model/00000000-0000-4000-8000-000000000000"}, "not an existing"),
    ({"scope": "crn:modelyard:run/whatever"}, "is a job run's scope"),
    ({"scope": "crn:modelyard:run/00000000-0000-4000-8000-000000000000"}, "a job run's scope"),
    ({"role": "admin", "scope": "churn"}, "refused for an admin key"),
]


def test_bad_api_key_requests_are_refused(registry: Registry) -> None:
    registry.create_model("churn")
    for arguments, words in BAD_KEY_REQUESTS:
        chosen: dict[str, Any] = {"name": "k", **arguments}
        with pytest.raises(InvalidInput) as info:
            registry.create_api_key(**chosen)
        assert words in str(info.value), (arguments, str(info.value))
    assert registry.list_api_keys() == []


def test_revoked_keys_are_refused_at_once_and_revocation_is_idempotent(
    registry: Registry, clock: MsClock
) -> None:
    key, token = registry.create_api_key("bob")
    other, other_token = registry.create_api_key("carol")
    registry.authenticate(token)  # cached
    clock.advance(60_000)
    revoked = registry.revoke_api_key(key.id)
    assert revoked.revoked_ms == T0 + 60_000
    with pytest.raises(Unauthorized) as info:
        registry.authenticate(token)
    assert f"API key {key.id} ('bob') was revoked at " in str(info.value)
    assert info.value.details["reason"] == "revoked"
    assert registry.authenticate(other_token) == other
    clock.advance(5)
    assert registry.revoke_api_key(key.id).revoked_ms == T0 + 60_000
    with pytest.raises(NotFound, match="'nope'"):
        registry.revoke_api_key("nope")


def test_wrong_api_keys_are_unknown_without_echoing_them(registry: Registry) -> None:
    registry.create_api_key("alice")
    _, access_key = registry.create_model("churn")
    for token, words in [
        ("myk_" + "A" * 43, "unknown"),
        ("Bearer xyz-secret-guess", "unknown"),
        (access_key, "looks like a model access key"),
        ("", "no API key was given"),
        (None, "no API key was given"),
    ]:
        with pytest.raises(Unauthorized) as info:
            registry.authenticate(token)  # type: ignore[arg-type]
        assert words in str(info.value)
        if token:
            assert token[4:] not in str(info.value) and "secret-guess" not in str(info.value)


def test_list_api_keys_shows_every_key_without_secrets(registry: Registry, clock: MsClock) -> None:
    a, token_a = registry.create_api_key("a")
    clock.advance(1)
    b, token_b = registry.create_api_key("b", role="admin", expires_in_ms=None)
    registry.revoke_api_key(a.id)
    listed = registry.list_api_keys()
    assert [k.id for k in listed] == [a.id, b.id]
    assert listed[0].revoked_ms == T0 + 1 and listed[1] == b
    assert {f.name for f in dataclasses.fields(ApiKey)} == {
        "id",
        "name",
        "role",
        "prefix",
        "scope",
        "created_ms",
        "expires_ms",
        "revoked_ms",
        "user_id",
        "project_crn",
        "project_role",
    }
    text = repr(listed)
    for token in (token_a, token_b):
        assert token not in text and hashlib.sha256(token.encode()).hexdigest() not in text


def test_only_hashes_of_keys_are_stored(registry: Registry, store: MetricsStore) -> None:
    _, access_key = registry.create_model("churn")
    rotated = registry.rotate_access_key("churn")
    _, token = registry.create_api_key("alice")
    tables = {name: raw_rows(store, name) for name in ("models", "api_keys")}
    cells = [str(cell) for rows in tables.values() for row in rows for cell in row]
    for secret in (access_key, rotated, token):
        assert not any(secret[12:20] in cell for cell in cells), "a token is stored in clear"
    digests = {hashlib.sha256(t.encode()).hexdigest() for t in (rotated, token)}
    assert digests <= set(cells)
    assert hashlib.sha256(access_key.encode()).hexdigest() not in cells  # rotated away


# -- replica events -------------------------------------------------------------------------------
def test_replica_events_come_back_newest_first(registry: Registry, clock: MsClock) -> None:
    _, _, deployment = deployed(registry)
    _, _, other = deployed(registry)
    first = registry.record_event(deployment.crn, "r1", "started", {"pid": 42, "port": 9000})
    clock.advance(5)
    second = registry.record_event(deployment.crn, "r1", "restarted", {"delay_s": 0.5})
    registry.record_event(other.crn, "r9", "started")
    third = registry.record_event(deployment.crn, "r2", "stopped", at_ms=T0 - 1)
    assert first.at_ms == T0 and second.at_ms == T0 + 5 and third.at_ms == T0 - 1
    assert first.details == {"pid": 42, "port": 9000}
    assert registry.events(deployment.crn) == [third, second, first]
    assert registry.events(deployment.crn, limit=2) == [third, second]
    assert [e.kind for e in registry.events(other.crn)] == ["started"]
    assert registry.events(other.crn)[0].details == {}


def test_replica_events_are_capped_per_deployment(store: MetricsStore, clock: MsClock) -> None:
    registry = Registry(store, clock=clock, events_kept=5)
    _, _, deployment = deployed(registry)
    _, _, other = deployed(registry)
    registry.record_event(other.crn, "r1", "started")
    for i in range(12):
        registry.record_event(deployment.crn, "r1", "restarted", {"n": i})
    assert [e.details["n"] for e in registry.events(deployment.crn)] == [11, 10, 9, 8, 7]
    assert len(raw_rows(store, "replica_events")) == 6
    assert len(registry.events(other.crn)) == 1
    with pytest.raises(InvalidInput, match="events_kept=0"):
        Registry(store, events_kept=0)


def test_replica_event_errors(registry: Registry) -> None:
    _, _, deployment = deployed(registry)
    unknown = new_crn("deployment")
    with pytest.raises(NotFound, match="not registered"):
        registry.record_event(unknown, "r1", "started")
    with pytest.raises(NotFound):
        registry.events(unknown)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"replica_id": ""}, "replica_id='' is not accepted"),
        ({"kind": "k" * 65}, "at most 64 characters"),
        ({"details": [1, 2]}, "expected a dict"),
        ({"details": {"x": "y" * 70_000}}, "at most 65536"),
        ({"details": {"f": object()}}, "cannot be stored as JSON"),
        ({"at_ms": -1}, "at_ms=-1"),
    ]
    for extra, words in cases:
        arguments: dict[str, Any] = {
            "deployment_crn": deployment.crn,
            "replica_id": "r1",
            "kind": "started",
            **extra,
        }
        with pytest.raises(InvalidInput) as info:
            registry.record_event(**arguments)
        assert words in str(info.value)
    for limit in (0, 10_001, 2.5):
        with pytest.raises(InvalidInput, match="limit="):
            registry.events(deployment.crn, limit=limit)  # type: ignore[arg-type]
    assert registry.events(deployment.crn) == []


# -- caches seen from another registry ------------------------------------------------------------
def test_another_registry_sees_a_rotation_once_its_cache_entry_is_older_than_the_ttl(
    store: MetricsStore, clock: MsClock, ticks: FakeClock
) -> None:
    here = Registry(store, clock=clock, monotonic=ticks)
    there = Registry(store, clock=clock, monotonic=ticks)  # as if in another process
    model, old = here.create_model("churn")
    _, token = here.create_api_key("alice")
    assert there.model_by_access_key(old) == model
    assert there.authenticate(token).revoked_ms is None
    new = here.rotate_access_key("churn")
    here.update_model("churn", concurrency=9)
    revoked = here.revoke_api_key(here.list_api_keys()[0].id)
    ticks.advance(1.9)
    assert there.model_by_access_key(old) == model  # stale within the TTL, by design
    assert there.authenticate(token).revoked_ms is None
    ticks.advance(0.1)
    with pytest.raises(Unauthorized, match="unknown"):
        there.model_by_access_key(old)
    assert there.model_by_access_key(new).settings.concurrency == 9
    with pytest.raises(Unauthorized, match="revoked"):
        there.authenticate(token)
    assert revoked.revoked_ms == T0


def test_a_registry_needs_an_sql_store_and_a_sane_ttl(store: MetricsStore) -> None:
    with pytest.raises(InvalidInput, match="needs an SQL store"):
        Registry(object())  # type: ignore[arg-type]
    for ttl in (-1, 3601, "2s", True):
        with pytest.raises(InvalidInput, match="cache_ttl_s="):
            Registry(store, cache_ttl_s=ttl)  # type: ignore[arg-type]
    uncached = Registry(store, cache_ttl_s=0)
    _, key = uncached.create_model("churn")
    uncached.model_by_access_key(key)
    Registry(store).rotate_access_key("churn")  # another registry: no cache to wait for
    with pytest.raises(Unauthorized):
        uncached.model_by_access_key(key)
