"""Two real ``modelyard server`` processes on one PostgreSQL database, each with its own home:
every server serves every model, and a change made through one reaches the other.

Deploy through A, call through B (B never saw the project folder: it fetches the build's
snapshot from the database); deploy again through A and B follows; roll back through B and A
follows; read everything through A (B's prediction records, the builds, the deployments); kill A
with SIGKILL and B keeps serving. The servers run with their default watcher interval
(``MODELYARD_SYNC_INTERVAL``, 2 s).

Marked ``slow``: two servers, builds, replicas starting on both.
"""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _server import ServerProcess
from _wait import wait_until
from modelyard.runtime import leftovers

pytestmark = pytest.mark.slow

MODEL = "churn"
PREDICT = """
    import modelyard

    VERSION = {version}


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("x", args["x"])
        return {{"version": VERSION}}
"""


def project(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text(textwrap.dedent(PREDICT.format(version=version)))
    return folder


class Server(ServerProcess):
    """``modelyard server`` with a home of its own and the shared database, and its model."""

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method, f"{self.base}/api/v1{path}", headers=self.auth, timeout=120, **kw
        )

    def predict(self, x: int = 1) -> tuple[int, dict[str, Any]]:
        try:
            answer = self.api("POST", f"/models/{MODEL}/predict", json={"x": x})
        except httpx.TransportError as exc:
            return 0, {"error": repr(exc)}
        return answer.status_code, answer.json()

    def version(self) -> int | None:
        status, body = self.predict()
        return body["response"]["prediction"]["version"] if status == 200 else None


def until(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    return wait_until(check, timeout_s, what, 0.05)


@pytest.fixture
def servers(tmp_path: Path, postgres_schema_url: str) -> Iterator[tuple[Server, Server]]:
    started: list[Server] = []
    try:
        # Both start at once (the first to open the database creates its tables, under a lock).
        started.append(Server(tmp_path / "home-a", postgres_schema_url).launch())
        started.append(Server(tmp_path / "home-b", postgres_schema_url).launch())
        for server in started:
            server.wait_ready()
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()
            # A server killed with SIGKILL leaves its replicas running: end them.
            leftovers.reap(server.home, 1.0)


def test_every_server_serves_every_model(servers: tuple[Server, Server], tmp_path: Path) -> None:
    a, b = servers
    body = {"project": str(project(tmp_path / "v1", 1)), "example": {"x": 1}}
    first = a.api("POST", f"/models/{MODEL}/deploy", json=body)
    assert first.status_code == 201, first.text
    assert not (b.home / "builds" / "snapshots" / first.json()["build"]["digest"]).exists()

    # Deploy through A, call through B: B fetches the snapshot and starts its own replica.
    assert until(b.version, "B serving version 1", 60) == 1
    assert a.version() == 1

    body = {"project": str(project(tmp_path / "v2", 2)), "example": {"x": 1}}
    second = a.api("POST", f"/models/{MODEL}/deploy", json=body)
    assert second.status_code == 201, second.text
    until(lambda: b.version() == 2, "B rolling to version 2", 60)

    # Roll back through B: B serves version 1 at once, A follows within seconds.
    back = b.api("POST", f"/models/{MODEL}/rollback")
    assert back.status_code == 200, back.text
    assert b.version() == 1
    until(lambda: a.version() == 1, "A rolling back to version 1", 60)

    # Read everything through A: B's predictions, and the deployments made through each.
    served_by_b = {b.predict(x)[1]["uuid"] for x in range(20)}
    model_crn = a.api("GET", f"/models/{MODEL}").json()["model"]["crn"]

    def read_by_a() -> set[str]:
        answer = a.api("GET", "/metrics", params={"modelCrn": model_crn, "kind": "prediction"})
        return {m["predictionUuid"] for m in answer.json()["metrics"]} & served_by_b

    assert until(lambda: read_by_a() == served_by_b, "A reading B's records", 30)
    status = a.api("GET", f"/models/{MODEL}").json()
    assert status["active"]["crn"] == back.json()["deployment"]["crn"]
    assert [d["state"] for d in status["deployments"]] == ["active", "replaced", "replaced"]

    # Kill A: B keeps serving, every call answered.
    a.stop(signal.SIGKILL)
    answers = [b.predict(x) for x in range(50)]
    assert [status for status, _ in answers] == [200] * 50
    assert {body["response"]["prediction"]["version"] for _, body in answers} == {1}
