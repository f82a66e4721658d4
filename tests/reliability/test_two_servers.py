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

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.runtime import free_port, leftovers

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


class Server:
    """``modelyard server`` on a free loopback port, a home of its own and the shared database."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"{home.name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        env.update(MODELYARD_HOME=str(home), MODELYARD_DATABASE_URL=database_url)
        argv = [sys.executable, "-m", "modelyard.server", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_healthy(self) -> None:
        until(self._healthy, f"server {self.home.name} answering /healthz", 90)

    def _healthy(self) -> bool:
        assert self.proc.poll() is None, f"server exited: {self.log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.home / 'admin.key').read_text().strip()}"}

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

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def until(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout_s:g}s")


@pytest.fixture
def servers(tmp_path: Path, postgres_schema_url: str) -> Iterator[tuple[Server, Server]]:
    started: list[Server] = []
    try:
        # Both start at once (the first to open the database creates its tables, under a lock).
        started.append(Server(tmp_path / "home-a", postgres_schema_url))
        started.append(Server(tmp_path / "home-b", postgres_schema_url))
        for server in started:
            server.wait_healthy()
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
