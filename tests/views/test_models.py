"""``views.models.model_list`` (``GET /api/v1/models``): every model with its active deployment,
read in two queries whatever the number of models (it used to ask once more per model)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelyard.registry import Registry

from .conftest import Api


def _register(registry: Registry, count: int) -> dict[str, str]:
    """``count`` models, every other one with an active deployment; returns name -> its CRN."""
    active = {}
    for i in range(count):
        name = f"m{i:02d}"
        registry.create_model(name)
        if i % 2:
            build = registry.add_build(
                name,
                digest="d",
                file="predict.py",
                function="predict",
                python="python",
                env_key="e",
                ok=True,
            )
            deployment = registry.add_deployment(name, build.crn, env={"TOKEN": "secret"})
            active[name] = registry.set_deployment_state(deployment.crn, "active").crn
    return active


def test_models_are_listed_with_their_active_deployment_in_two_queries(
    with_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(api: Api) -> None:
        registry = api.services.registry
        active = await asyncio.to_thread(_register, registry, 12)
        calls: list[str] = []
        real_list = registry.list_deployments

        def list_deployments(*args: Any, **kwargs: Any) -> Any:
            calls.append("list_deployments")
            return real_list(*args, **kwargs)

        def one_query_per_model(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("model_list asked for one model's deployment")

        monkeypatch.setattr(registry, "list_deployments", list_deployments)
        monkeypatch.setattr(registry, "active_deployment", one_query_per_model)
        answer = await api.client.get("/api/v1/models", headers=api.auth())
        assert answer.status_code == 200, answer.text
        listed = {m["name"]: m["active_deployment"] for m in answer.json()["models"]}
        assert sorted(listed) == [f"m{i:02d}" for i in range(12)]
        assert {n: d["crn"] for n, d in listed.items() if d is not None} == active
        assert all(d["env"] == {"TOKEN": "secret"} for d in listed.values() if d)  # an admin
        assert calls == ["list_deployments"]

    with_api(scenario)
