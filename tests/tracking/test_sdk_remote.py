"""The remote backend's requests, checked against a real loopback HTTP server.

There is no Modelyard server yet: these tests pin the requests the SDK sends (paths, bodies,
auth) and how error answers are translated; the server issue implements the other side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import modelyard
from modelyard.errors import Forbidden, NotFound
from modelyard.tracking import backends
from modelyard.tracking.remote import RemoteBackend

LoopbackServer = Any  # the fixture type lives in conftest.py

DEPLOYMENT = "crn:modelyard:deployment/11111111-1111-4111-8111-111111111111"
RECORD = {
    "modelDeploymentCrn": DEPLOYMENT,
    "modelBuildCrn": "crn:modelyard:build/b",
    "modelCrn": "crn:modelyard:model/m",
    "startTimeStampMs": 5,
    "endTimeStampMs": 6,
    "predictionUuid": "u1",
    "metrics": {"p": 0.5, "in": {"a": 1}},
    "kind": "prediction",
}


def _server(method: str, path: str, body: Any) -> tuple[int, Any]:
    if method == "GET" and path.startswith("/api/v1/metrics?"):
        if "pageToken=t1" in path:
            return 200, {"metrics": [{**RECORD, "predictionUuid": "u2"}], "nextPageToken": None}
        return 200, {"metrics": [RECORD], "nextPageToken": "t1"}
    if path == "/api/v1/metrics/delayed" and body["predictionUuid"] == "missing":
        return 404, {"code": "not_found", "message": "prediction 'missing' not found"}
    if path == "/api/v1/metrics/aggregate":
        return 403, {"code": "forbidden", "message": "key may not write to this deployment"}
    return 204, None


@pytest.fixture
def remote(
    http_server: Callable[..., LoopbackServer], monkeypatch: pytest.MonkeyPatch
) -> LoopbackServer:
    server = http_server(_server)
    monkeypatch.setenv("MODELYARD_URL", server.url)
    monkeypatch.setenv("MODELYARD_API_KEY", "k1")
    monkeypatch.setenv("MODELYARD_DEPLOYMENT_CRN", DEPLOYMENT)
    return server


def test_url_selects_the_remote_backend(remote: LoopbackServer) -> None:
    backend = backends.select()
    assert isinstance(backend, RemoteBackend)
    assert backend.identity.deployment_crn == DEPLOYMENT
    assert backends.select(dev=True).name == "dev"


def test_predictions_are_sent_in_a_batch_with_the_key(remote: LoopbackServer) -> None:
    @modelyard.model_metrics
    def predict(x: int) -> int:
        modelyard.track_metric("x", x)
        return x

    outs = [predict(i)["uuid"] for i in range(3)]
    modelyard.flush()
    posts = [r for r in remote.requests if r.path == "/api/v1/metrics/predictions"]
    sent = [p for r in posts for p in r.body["predictions"]]
    assert [p["predictionUuid"] for p in sent] == outs
    assert sent[0]["metrics"] == {"x": 0}
    assert sent[0]["modelDeploymentCrn"] == DEPLOYMENT
    assert set(sent[0]) == {
        "predictionUuid",
        "modelCrn",
        "modelBuildCrn",
        "modelDeploymentCrn",
        "startTimeStampMs",
        "endTimeStampMs",
        "metrics",
    }
    assert all(r.headers["Authorization"] == "Bearer k1" for r in posts)


def test_reads_page_and_frames_follow_the_token(remote: LoopbackServer) -> None:
    page = modelyard.read_metrics(DEPLOYMENT, start_timestamp_ms=1, limit=1)
    assert page["nextPageToken"] == "t1"
    assert page["metrics"] == [{k: v for k, v in RECORD.items() if k != "kind"}]
    query = remote.requests[-1].path
    assert "modelDeploymentCrn=crn%3Amodelyard%3Adeployment" in query
    assert "startTimeStampMs=1" in query and "limit=1" in query
    df = modelyard.read_metrics_frame(DEPLOYMENT)
    assert df["predictionUuid"].tolist() == ["u1", "u2"]
    assert df["in.a"].tolist() == [1, 1]


def test_delayed_aggregate_and_run_metrics_requests(
    remote: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    modelyard.track_delayed_metrics({"actual": 1}, "u1")
    delayed = remote.requests[-1]
    assert delayed.body["predictionUuid"] == "u1" and delayed.body["metrics"] == {"actual": 1}
    assert "pid" in delayed.body["source"]
    with pytest.raises(NotFound, match="prediction 'missing' not found"):
        modelyard.track_delayed_metrics({"actual": 1}, "missing")
    with pytest.raises(Forbidden, match="may not write"):
        modelyard.track_aggregate_metrics({"auc": 0.7}, 1_700_000_000_000, 1_700_000_000_010)
    assert remote.requests[-1].body == {
        "modelDeploymentCrn": DEPLOYMENT,
        "startTimeStampMs": 1_700_000_000_000,
        "endTimeStampMs": 1_700_000_000_010,
        "metrics": {"auc": 0.7},
    }
    monkeypatch.setenv("MODELYARD_RUN_ID", "r 1")
    modelyard.track_metric("rows", 3)
    assert remote.requests[-1].path == "/api/v1/runs/r%201/metrics"
    assert remote.requests[-1].body == {"metrics": {"rows": 3}}
