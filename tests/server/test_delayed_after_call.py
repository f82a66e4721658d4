"""Ground truth right after a served call: ``call_model`` then ``track_delayed_metrics`` over the
remote SDK, against a real server (uvicorn in a thread, loopback) with a real replica process.

The gateway's record writer is slowed to a 5 s flush interval, so without the delayed route's
flush-and-retry every delayed call below would find no record and answer 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import modelyard
from _live import admin_key, live_server
from modelyard.errors import NotFound
from modelyard.tracking import backends

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_flush_server(
    modelyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    monkeypatch.setenv("MODELYARD_FLUSH_INTERVAL", "5s")
    with live_server(modelyard_home, jobs=False) as url:
        yield url, admin_key(modelyard_home)


def test_delayed_metrics_right_after_a_served_call_find_the_prediction(
    slow_flush_server: tuple[str, str], project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, admin = slow_flush_server
    deployed = httpx.post(
        f"{url}/api/v1/models/churn/deploy",
        json={"project": str(project), "example": {"x": 1}},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=120,
    )
    assert deployed.status_code == 201, deployed.text
    access_key = deployed.json()["access_key"]
    deployment = deployed.json()["deployment"]["crn"]
    monkeypatch.setenv("MODELYARD_URL", url)
    monkeypatch.setenv("MODELYARD_API_KEY", admin)
    backends.close_all()

    uuids = []
    for i in range(6):
        answer = modelyard.call_model(access_key, {"x": i})
        assert answer["success"] is True
        modelyard.track_delayed_metrics({"truth": i % 2}, answer["uuid"])  # at once: no sleep
        uuids.append(answer["uuid"])

    with pytest.raises(NotFound, match="no-such-uuid"):  # a uuid nobody made is still 404
        modelyard.track_delayed_metrics({"truth": 1}, "no-such-uuid")

    records = modelyard.read_metrics(model_deployment_crn=deployment)["metrics"]
    truth = {r["predictionUuid"]: r["metrics"].get("truth") for r in records}
    assert [truth[u] for u in uuids] == [i % 2 for i in range(6)]
