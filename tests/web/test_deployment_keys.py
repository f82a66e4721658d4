"""Each deployment's own run key (``serving/controller/run_keys.py``): replicas get a key scoped
to their model, shared by the deployment's replicas, revoked when the deployment is replaced or
stopped and when the server stops; a killed server's keys are revoked at its next start. Real
deploys and replica processes, and a real registry for the key bookkeeping."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import Unauthorized
from modelyard.ids import new_crn
from modelyard.registry import Deployment, Registry, Role
from modelyard.serving.controller.run_keys import DeploymentKeys
from modelyard.store.sqlite import SQLiteStore

from .conftest import Api

PREDICT = """
import os

def predict(args):
    return {"key": os.environ.get("MODELYARD_API_KEY"), "url": os.environ.get("MODELYARD_URL")}
"""


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "keyed"
    folder.mkdir()
    (folder / "predict.py").write_text(textwrap.dedent(PREDICT))
    return folder


async def _replica_env(api: Api) -> dict[str, Any]:
    answer = await api.client.post(
        "/api/v1/models/keyed/predict", json={"x": 1}, headers=api.auth()
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()["response"]
    return body


def _revoked(registry: Registry, token: str) -> bool:
    try:
        registry.authenticate(token)
    except Unauthorized as exc:
        return "revoked" in exc.message
    return False


@pytest.mark.slow  # deploys (replica processes)
def test_replicas_get_their_deployments_own_key(with_api: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    tokens: list[str] = []

    async def scenario(api: Api) -> None:
        registry = api.services.registry
        body = {"project": str(folder), "example": {"x": 1}, "replicas": 2}
        deployed = await api.client.post(
            "/api/v1/models/keyed/deploy", json=body, headers=api.auth()
        )
        assert deployed.status_code == 201, deployed.text
        model = registry.get_model("keyed")
        seen = {(await _replica_env(api))["key"] for _ in range(8)}
        assert len(seen) == 1  # both replicas, one key
        [token] = seen
        key = registry.authenticate(token)
        assert key.role is Role.RUN and key.scope == model.crn and key.user_id is None
        assert (await _replica_env(api))["url"] == api.services.config.base_url
        # it may not call models, nor anything but its own model's metrics routes
        call = await api.client.post(
            "/api/v1/models/keyed/predict", json={"x": 1}, headers=api.auth(token)
        )
        assert call.status_code == 403, call.text

        redeployed = await api.client.post(
            "/api/v1/models/keyed/deploy", json={**body, "replicas": 1}, headers=api.auth()
        )
        assert redeployed.status_code == 201, redeployed.text
        second = (await _replica_env(api))["key"]
        assert second != token and _revoked(registry, token)  # the replaced deployment's
        assert not _revoked(registry, second)
        stopped = await api.client.post("/api/v1/models/keyed/stop", headers=api.auth())
        assert stopped.status_code == 200, stopped.text
        assert _revoked(registry, second)
        started = await api.client.post("/api/v1/models/keyed/start", headers=api.auth())
        assert started.status_code == 200, started.text
        tokens.append((await _replica_env(api))["key"])

    with_api(scenario)
    # the server stopped: the running deployment's key went with it
    store = SQLiteStore(next(tmp_path.rglob("modelyard.db")))
    try:
        assert _revoked(Registry(store), tokens[0])
    finally:
        store.close()


def _deployment(registry: Registry) -> tuple[Any, Deployment]:
    model, _ = registry.create_model(f"m{len(registry.list_models())}")
    build = registry.add_build(
        model.crn,
        digest="0" * 64,
        file="predict.py",
        function="predict",
        python="python3",
        env_key="none",
        ok=True,
        error=None,
        log_path="/dev/null",
        crn=new_crn("build"),
    )
    return model, registry.add_deployment(model.crn, build.crn, 1, {}, None, None)


def test_the_last_replica_to_stop_revokes_and_leftovers_are_revoked(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keys.db")
    try:
        registry = Registry(store)
        registry.people.bootstrap("admin-password-1")
        model, deployment = _deployment(registry)
        keys = DeploymentKeys(registry, "http://127.0.0.1:1", "host:a")
        first = keys.acquire(model, deployment, "r1")["MODELYARD_API_KEY"]
        assert keys.acquire(model, deployment, "r2")["MODELYARD_API_KEY"] == first
        keys.release("r1")
        assert not _revoked(registry, first)  # r2 still holds it
        keys.release("r2")
        assert _revoked(registry, first) and keys.held() == {}
        again = keys.acquire(model, deployment, "r3")["MODELYARD_API_KEY"]
        assert again != first
        # a server killed before it could revoke: its next life (same owner) revokes
        other = DeploymentKeys(registry, "http://127.0.0.1:1", "host:b")
        theirs = other.acquire(model, deployment, "r9")["MODELYARD_API_KEY"]
        assert DeploymentKeys(registry, "http://127.0.0.1:1", "host:a").revoke_leftovers() == 1
        assert _revoked(registry, again) and not _revoked(registry, theirs)
    finally:
        store.close()
