"""Registries on separate store objects over one database (SQLite file, PostgreSQL), as two
server processes would be: changes cross over within the cache TTL, and racing writers keep the
invariants (one name, one active deployment per model)."""

from __future__ import annotations

import time

import pytest

from _backends import open_stores
from _threads import run_together
from modelyard.errors import Conflict, Unauthorized
from modelyard.registry import DeploymentState, Registry

from .conftest import StoreOpener


def test_a_rotation_in_one_registry_reaches_the_other_after_the_ttl(opener: StoreOpener) -> None:
    ttl = 0.3
    with opener() as first_store, opener() as second_store:
        here = Registry(first_store, cache_ttl_s=ttl)
        there = Registry(second_store, cache_ttl_s=ttl)
        model, old = here.create_model("churn")
        _, token = here.create_api_key("alice")
        assert there.model_by_access_key(old) == model  # cached over there
        assert there.authenticate(token).name == "alice"
        new = here.rotate_access_key("churn")
        here.revoke_api_key(here.list_api_keys()[0].id)
        with pytest.raises(Unauthorized):  # at once where it happened
            here.model_by_access_key(old)
        time.sleep(ttl + 0.05)
        with pytest.raises(Unauthorized, match="unknown"):
            there.model_by_access_key(old)
        with pytest.raises(Unauthorized, match="revoked"):
            there.authenticate(token)
        assert there.model_by_access_key(new).crn == model.crn


def test_racing_creates_of_one_name_give_one_model_and_conflicts(opener: StoreOpener) -> None:
    with open_stores(opener, 4) as stores:
        registries = [Registry(s) for s in stores]
        results = run_together([lambda r=r: r.create_model("churn") for r in registries])
        created = [r for r in results if isinstance(r, tuple)]
        assert len(created) == 1, results
        assert all(isinstance(r, Conflict) for r in results if not isinstance(r, tuple)), results
        model, key = created[0]
        for registry in registries:
            assert registry.list_models() == [model]
            assert registry.model_by_access_key(key) == model


def test_racing_activations_leave_exactly_one_active_deployment(opener: StoreOpener) -> None:
    with open_stores(opener, 3) as stores:
        registries = [Registry(s) for s in stores]
        setup = registries[0]
        setup.create_model("churn")
        build = setup.add_build(
            "churn", digest="d", file="p.py", function="predict", python="py", env_key="e", ok=True
        )
        deployments = [setup.add_deployment("churn", build.crn) for _ in range(6)]

        def activate(registry: Registry, crns: list[str]) -> int:
            for crn in crns * 3:
                registry.set_deployment_state(crn, "active")
            return len(crns) * 3

        results = run_together(
            [
                lambda r=r, i=i: activate(r, [d.crn for d in deployments[i::3]])
                for i, r in enumerate(registries)
            ]
        )
        assert results == [6, 6, 6], results
        states = [d.state for d in setup.list_deployments("churn")]
        assert states.count(DeploymentState.ACTIVE) == 1
        assert states.count(DeploymentState.REPLACED) == 5
        active = setup.active_deployment("churn")
        assert active is not None and active.state is DeploymentState.ACTIVE
