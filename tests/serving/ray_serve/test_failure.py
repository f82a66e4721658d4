"""Failures of the Ray cluster under a real ``modelyard server --runtime ray`` with clients
looping on it: a worker node killed (SIGKILL of its raylet) and the head made unreachable.

The two tests share one server and the session's two-node cluster (``tests/_ray.py``); each
leaves the cluster whole again (the worker restarted, the head resumed)."""

from __future__ import annotations

import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from _ray import RayTestCluster
from _server import ServerProcess
from _wait import wait_until

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pydantic.*"),
]

PREDICT = """
import os, time

def predict(args):
    time.sleep(0.02)
    return {"double": args["x"] * 2, "pid": os.getpid()}
"""
CLIENTS = 8


def _ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else None


def _deploy(server: ServerProcess, folder: Path, name: str, cpus: float, replicas: int) -> None:
    folder.mkdir()
    (folder / "predict.py").write_text(textwrap.dedent(PREDICT))
    body = {"project": str(folder), "example": {"x": 1}, "cpus": cpus, "replicas": replicas}
    with httpx.Client(base_url=server.base, headers=server.auth, timeout=180) as c:
        _ok(c.post(f"/api/v1/models/{name}/deploy", json=body), 201)


def _states(c: httpx.Client, name: str) -> list[dict[str, Any]]:
    return [r["state"] for r in _ok(c.get(f"/api/v1/models/{name}"))["replicas"]]


def _status_of(c: httpx.Client, name: str, replica_id: str) -> str:
    return str({s["replica_id"]: s["status"] for s in _states(c, name)}[replica_id])


def _all_healthy(c: httpx.Client, name: str, count: int) -> bool:
    states = _states(c, name)
    return len(states) == count and all(s["status"] == "healthy" for s in states)


class Load:
    """``CLIENTS`` threads posting predictions until stopped: each answer's status and time."""

    def __init__(self, server: ServerProcess, name: str) -> None:
        self.server, self.name = server, name
        self.answers: list[tuple[float, int, str, float]] = []  # (at, status, body, seconds)
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._loop) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(120)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.server.base, headers=self.server.auth, timeout=60) as c:
            while not self._done.is_set():
                started = time.monotonic()
                try:
                    got = c.post(f"/api/v1/models/{self.name}/predict", json={"x": 2})
                    status, text = got.status_code, got.text
                except httpx.HTTPError as exc:
                    status, text = 0, repr(exc)
                self.answers.append((started, status, text[:300], time.monotonic() - started))
                if status != 200:
                    time.sleep(0.05)  # a failing server: do not spin

    def count_after(self, at: float) -> int:
        return sum(1 for t, status, _, _ in list(self.answers) if t > at and status == 200)

    def wait_answers(self, at: float, count: int, timeout_s: float = 30) -> None:
        wait_until(lambda: self.count_after(at) >= count, timeout_s, f"{count} answers")


def _timed(step: Callable[[], object]) -> float:
    started = time.monotonic()
    step()
    return time.monotonic() - started


def test_a_killed_worker_node_fails_no_request_and_its_replica_comes_back(
    server: ServerProcess, ray_cluster: RayTestCluster, tmp_path: Path
) -> None:
    # 1.5 CPU each on nodes of 2 CPUs: one replica per node, so the kill takes one replica away
    _deploy(server, tmp_path / "proj", "nodekill", cpus=1.5, replicas=2)
    with httpx.Client(base_url=server.base, headers=server.auth, timeout=30) as c:
        wait_until(lambda: _all_healthy(c, "nodekill", 2), 60, "2 healthy replicas")
        nodes = _ok(c.get("/api/v1/cluster"))["nodes"]
        placed = {p["name"]: n["id"] for n in nodes for p in n["placed"]}
        assert len(placed) == 2 and len(set(placed.values())) == 2, nodes
        lost = next(name for name, node in placed.items() if node == ray_cluster.worker_node_id)
        with Load(server, "nodekill") as load:
            load.wait_answers(0, 50)
            killed = time.monotonic()
            gone = _timed(ray_cluster.kill_worker)
            load.wait_answers(time.monotonic(), 50)  # one replica serves everything meanwhile
            wait_until(lambda: _status_of(c, "nodekill", lost) != "healthy", 60, "lost replica")
            back = _timed(ray_cluster.restart_worker)
            wait_until(lambda: _all_healthy(c, "nodekill", 2), 120, "the lost replica back")
            full = time.monotonic() - killed
            load.wait_answers(time.monotonic(), 50)
        states = {s["replica_id"]: s for s in _states(c, "nodekill")}

        # Ray marks the killed raylet's node dead only after its health checks time out; until
        # then it is listed alive beside the restarted one (a new node id).
        def two_nodes() -> dict[str, Any] | None:
            view: dict[str, Any] = _ok(c.get("/api/v1/cluster"))
            return view if len(view["nodes"]) == 2 else None

        cluster = wait_until(two_nodes, 90, "the killed node marked dead in the cluster view")
        timeline = _ok(c.get("/api/v1/models/nodekill/timeline"))["events"]
        c.delete("/api/v1/models/nodekill")
    statuses = Counter(status for _, status, _, _ in load.answers)
    failed = [a for a in load.answers if a[1] != 200][:5]
    assert set(statuses) == {200}, (statuses, failed)
    assert states[lost]["restarts"] >= 1, states
    seen = {e["title"] for e in timeline if e["detail"].startswith(lost)}
    assert {"Replica unhealthy", "Replica restarted"} <= seen, timeline
    nodes = cluster["nodes"]  # the dead node is no longer shown: nothing is placed on it
    assert len(nodes) == 2 and all(n["alive"] for n in nodes) and cluster["waiting"] == [], nodes
    print(
        f"\nnode kill: {len(load.answers)} requests, none failed; the worker's processes gone "
        f"{gone:.1f} s after the kill, the restarted node alive {back:.1f} s after that, full "
        f"capacity (both replicas healthy) {full:.1f} s after the kill"
    )


OUTAGE_S = 8.0  # well inside Ray's own 60 s, after which its nodes and drivers give up the GCS
NO_HANG_S = 5.0  # no request may take longer than this while the head is away
CONTROL_PLANE = ("/healthz", "/api/v1/models", "/api/v1/models/headdown", "/ui/", "/ui/cluster")


def test_an_unreachable_head_fails_predictions_fast_and_everything_comes_back(
    server: ServerProcess, ray_cluster: RayTestCluster, tmp_path: Path
) -> None:
    _deploy(server, tmp_path / "proj", "headdown", cpus=0.25, replicas=2)
    pid = server.proc.pid if server.proc is not None else None
    with httpx.Client(base_url=server.base, headers=server.auth, timeout=30) as c:
        wait_until(lambda: _all_healthy(c, "headdown", 2), 60, "2 healthy replicas")
        with Load(server, "headdown") as load:
            load.wait_answers(0, 30)
            paused = ray_cluster.pause_head()
            stopped = time.monotonic()
            try:
                wait_until(lambda: _refused_after(load, stopped), 10, "a 503 while it is away")
                seen = {path: _timed_get(c, path) for path in CONTROL_PLANE}
                cluster = c.get("/api/v1/cluster")
                time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
            finally:
                ray_cluster.resume_head(paused)
            resumed = time.monotonic()
            load.wait_answers(resumed, 50, timeout_s=60)
            recovered = min(t for t, status, _, _ in load.answers if t > resumed and status == 200)
        assert _ok(c.get("/api/v1/cluster"))["waiting"] == []
        assert _all_healthy(c, "headdown", 2)
        c.delete("/api/v1/models/headdown")
    assert server.proc is not None and server.proc.pid == pid and server.proc.poll() is None
    # every request the outage touched: sent before the head came back, answered after it left
    during = [a for a in load.answers if a[0] < resumed and a[0] + a[3] > stopped]
    assert {status for _, status, _, _ in during} <= {200, 503}, during[:5]
    refused = [body for _, status, body, _ in during if status == 503]
    assert refused and all(f"Ray runtime at {ray_cluster.address}" in b for b in refused), refused
    slowest = max(seconds for _, _, _, seconds in during)
    assert slowest < NO_HANG_S, slowest
    for path, (status, seconds) in seen.items():
        assert status < 500 and seconds < NO_HANG_S, (path, status, seconds)
    assert cluster.status_code == 503 and ray_cluster.address in cluster.text, cluster.text
    first_refusal = min(t + s for t, status, _, s in during if status == 503) - stopped
    print(
        f"\nhead away {resumed - stopped:.1f} s: {len(during)} requests meanwhile, "
        f"{len(refused)} got 503 (the first {first_refusal:.1f} s in), slowest "
        f"{slowest:.2f} s; predictions answered again {recovered - resumed:.1f} s after its return"
    )


def _refused_after(load: Load, at: float) -> bool:
    return any(t >= at and status == 503 for t, status, _, _ in list(load.answers))


def _timed_get(c: httpx.Client, path: str) -> tuple[int, float]:
    started = time.monotonic()
    status = c.get(path, timeout=NO_HANG_S * 2).status_code
    return status, time.monotonic() - started
