"""A real ``modelyard server`` process: the first start writes the admin key (0600) and prints it
once; a deployment answers a plain HTTP call through ``POST /model``; SIGTERM stops cleanly
(replicas stopped, records flushed) and the next start brings the deployment back."""

from __future__ import annotations

import signal
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from _processes import ended
from modelyard.store import Query, open_store

from .conftest import ServerProcess

pytestmark = pytest.mark.slow

PROBE = """
import os

import httpx
import modelyard


def predict(args):
    url, key = os.environ["MODELYARD_URL"], os.environ["MODELYARD_API_KEY"]
    own = os.environ["MODELYARD_DEPLOYMENT_CRN"]
    records = modelyard.read_metrics(model_deployment_crn=own)["metrics"]
    auth = {"Authorization": "Bearer " + key}
    other = httpx.get(url + "/api/v1/metrics", params={"modelDeploymentCrn": args["deployment"]},
                      headers=auth)
    keys = httpx.get(url + "/api/v1/keys", headers=auth)
    return {"url": url, "records": len(records), "other": other.status_code,
            "keys": keys.status_code}
"""


def _stopped_cleanly(server: ServerProcess) -> bool:
    """SIGTERM, then: uvicorn ran the app's shutdown and re-raised the signal (exit -15)."""
    code = server.stop()
    return code in (0, -signal.SIGTERM) and "Application shutdown complete" in server.output


def test_first_start_prints_the_admin_key_once(
    server_process: Callable[[], ServerProcess], modelyard_home: Path
) -> None:
    first = server_process()
    token = first.admin
    assert stat.S_IMODE((modelyard_home / "admin.key").stat().st_mode) == 0o600
    assert _stopped_cleanly(first)
    assert first.output.count(token) == 1
    second = server_process()
    assert second.admin == token
    answer = httpx.get(second.url + "/api/v1/keys", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert _stopped_cleanly(second)
    assert token not in second.output
    assert "Created the admin API key" not in second.output


def test_deploy_call_restart_and_the_deployment_comes_back(
    server_process: Callable[[], ServerProcess], project: Path, modelyard_home: Path
) -> None:
    server = server_process()
    auth = {"Authorization": f"Bearer {server.admin}"}
    deployed = httpx.post(
        f"{server.url}/api/v1/models/churn/deploy",
        json={"project": str(project), "example": {"x": 1}},
        headers=auth,
        timeout=120,
    )
    assert deployed.status_code == 201, deployed.text
    access_key = deployed.json()["access_key"]
    deployment = deployed.json()["deployment"]["crn"]

    def call(x: int) -> httpx.Response:
        return httpx.post(
            f"{server.url}/model",
            json={"accessKey": access_key, "request": {"x": x}},
            headers=auth,
            timeout=30,
        )

    first = call(21)
    assert first.status_code == 200, first.text
    assert first.json()["response"]["prediction"] == {"double": 42}
    replica_pids = {
        c.pid for c in psutil.Process(server.proc.pid).children(recursive=True)
    }  # the replica runs under the server's runtime
    assert replica_pids

    assert _stopped_cleanly(server)
    assert all(ended(p) for p in replica_pids)
    # every answered call's record was flushed before the process ended
    with open_store(f"sqlite:///{modelyard_home / 'modelyard.db'}") as store:
        records, _ = store.read(Query(deployment_crn=deployment))
    assert first.json()["uuid"] in {r.uuid for r in records}

    server = server_process()
    again = call(5)
    assert again.status_code == 200, again.text
    assert again.json()["response"]["prediction"] == {"double": 10}
    status = httpx.get(f"{server.url}/api/v1/models/churn", headers=auth).json()
    assert status["active"]["crn"] == deployment

    # replicas reach the server with their deployment's own run key: user code reads its own
    # model's metrics over the SDK, and no other model's
    (project / "probe.py").write_text(PROBE)
    probed = httpx.post(
        f"{server.url}/api/v1/models/probe/deploy",
        json={"project": str(project), "file": "probe.py"},
        headers=auth,
        timeout=120,
    )
    assert probed.status_code == 201, probed.text
    answer = httpx.post(
        f"{server.url}/api/v1/models/probe/predict",
        json={"deployment": deployment},
        headers=auth,
        timeout=30,
    ).json()
    assert answer["success"] is True, answer
    assert answer["response"]["url"] == server.url
    assert answer["response"]["records"] >= 0  # its own deployment's read answered
    assert answer["response"]["other"] == 404  # churn's: as if it did not exist
    assert answer["response"]["keys"] == 403  # a run key may not list keys
