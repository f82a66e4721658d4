"""Serving under steady load through a real ``modelyard server`` process: a replica SIGKILLed, a
new build rolled out, the server restarted, a replica killed right after it answered.

Each test starts the server as a user would (the ``modelyard`` command, a temp home, loopback),
deploys a 2-replica model over the REST API and drives ``POST /api/v1/models/{name}/predict``
from asyncio clients (httpx) that record every request's outcome: status, uuid, replica, the
build that answered, when. The records are then read back from the home's SQLite store.

Marked ``slow``: each test takes seconds (process starts, restarts, a rollout).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from _async import run
from modelyard.runtime import free_port
from modelyard.store.base import Query, RecordKind
from modelyard.store.sqlite import SQLiteStore

pytestmark = pytest.mark.slow

MODEL = "churn"
PREDICT = """
    import modelyard

    VERSION = {version}


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("x", args["x"])
        return {{"churn": args["x"] % 2 == 0, "version": VERSION}}
"""


def project(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text(textwrap.dedent(PREDICT.format(version=version)))
    return folder


class Server:
    """``modelyard server`` on a free loopback port and a temp home; stopped with SIGTERM."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        env["MODELYARD_HOME"] = str(self.home)
        command = Path(sys.executable).with_name("modelyard")
        argv = [str(command), "server", "--port", str(self.port), "--log-level", "warning"]
        log = (self.home.parent / f"server-{time.monotonic_ns()}.log").open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the server exited with {self.proc.returncode}"
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("the server did not answer /healthz within 60 s")

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.home / 'admin.key').read_text().strip()}"}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def deploy(self, folder: Path, replicas: int = 2) -> dict[str, Any]:
        body = {"project": str(folder), "example": {"x": 1}, "replicas": replicas}
        answer = httpx.post(
            f"{self.base}/api/v1/models/{MODEL}/deploy", json=body, headers=self.auth, timeout=120
        )
        assert answer.status_code == 201, answer.text
        outcome: dict[str, Any] = answer.json()
        return outcome

    def status(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.base}/api/v1/models/{MODEL}", headers=self.auth, timeout=10)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def replicas(self) -> list[dict[str, Any]]:
        """The runtime's state of each running replica (pid, status, restarts...)."""
        return [view["state"] for view in self.status()["replicas"]]

    def records(self, model_crn: str | None = None) -> dict[str, str]:
        """Prediction uuid -> build CRN of every record of the model in the home's store."""
        model_crn = model_crn or self.status()["model"]["crn"]
        kinds = frozenset({RecordKind.PREDICTION})
        with SQLiteStore(self.home / "modelyard.db") as store:
            out: dict[str, str] = {}
            for batch in store.scan(Query(model_crn=model_crn, kinds=kinds)):
                pairs = zip(batch.uuid, batch.build_crn, strict=True)
                out.update((uuid, build) for uuid, build in pairs if uuid is not None)
        return out


@pytest.fixture
def server(modelyard_home: Path) -> Iterator[Server]:
    started = Server(modelyard_home).start()
    try:
        yield started
    finally:
        started.stop()


@dataclass
class Outcome:
    """One request as the client saw it."""

    sent: float
    done: float
    status: int | None  # None: no HTTP answer (connection refused, reset...)
    uuid: str | None = None
    replica: str | None = None
    version: int | None = None
    error: str = ""


@dataclass
class Load:
    """``workers`` clients, each sending a request, pausing ``pause_s``, again; until stopped or
    ``limit`` requests. ``gate`` cleared holds new requests (those in flight finish)."""

    base: str
    auth: dict[str, str]
    workers: int = 4
    pause_s: float = 0.005
    limit: int = 20_000
    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: int = 0

    def __post_init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self._stop = asyncio.Event()
        self._client = httpx.AsyncClient(base_url=self.base, headers=self.auth, timeout=30)
        self._tasks = [asyncio.ensure_future(self._worker(i)) for i in range(self.workers)]

    async def _worker(self, index: int) -> None:
        n = 0
        while not self._stop.is_set() and len(self.outcomes) < self.limit:
            await self.gate.wait()
            n += 1
            x = index * 1_000_000 + n
            sent = time.monotonic()
            self.in_flight += 1
            try:
                answer = await self._client.post(f"/api/v1/models/{MODEL}/predict", json={"x": x})
            except httpx.TransportError as exc:
                self.outcomes.append(Outcome(sent, time.monotonic(), None, error=repr(exc)))
            else:
                body = answer.json()
                response = body.get("response") or {}
                prediction = response.get("prediction") or {}
                self.outcomes.append(
                    Outcome(
                        sent,
                        time.monotonic(),
                        answer.status_code,
                        body.get("uuid"),
                        body.get("ReplicaID"),
                        prediction.get("version"),
                        "" if answer.status_code == 200 else answer.text,
                    )
                )
            finally:
                self.in_flight -= 1
            await asyncio.sleep(self.pause_s)

    async def quiet(self) -> None:
        """Hold new requests and wait until none is in flight."""
        self.gate.clear()
        while self.in_flight:
            await asyncio.sleep(0)

    async def ok_after(self, t: float, count: int, timeout_s: float = 30) -> None:
        """Wait until ``count`` requests sent after ``t`` were answered 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(1 for o in self.outcomes if o.sent > t and o.status == 200) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"fewer than {count} answers of 200 within {timeout_s} s after t")

    async def stop(self) -> list[Outcome]:
        self._stop.set()
        self.gate.set()
        await asyncio.gather(*self._tasks)
        await self._client.aclose()
        return self.outcomes


def failures(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status != 200]


def wait_zombie_or_gone(pid: int) -> None:
    """Until the killed process's sockets are closed (it is a zombie or reaped)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} still runs 10 s after SIGKILL")


async def wait_restarted(server: Server, replica_id: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = next(s for s in server.replicas() if s["replica_id"] == replica_id)
        if state["restarts"] == 1 and state["status"] == "healthy":
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"replica {replica_id} not back within {timeout_s} s: {state}")


def test_a_replica_killed_under_load_costs_no_request(server: Server, tmp_path: Path) -> None:
    """SIGKILL one of 2 replicas under steady load: no failed request, the replica is back.

    The kill happens between two of the victim's requests (new requests are held for the
    moment of the kill, then flow again while the replica is dead and restarting): everything
    sent afterwards must be routed around the dead replica, retried on the other one when its
    connect is refused, and succeed. Kills *inside* requests (resent once before any answer
    byte, docs/gateway.md) are tests/reliability/test_replica_kill.py's.
    """
    server.deploy(project(tmp_path / "v1", 1))
    victim = server.replicas()[0]

    async def scenario() -> list[Outcome]:
        load = Load(server.base, server.auth)
        await load.ok_after(0, 100)
        await load.quiet()
        os.kill(victim["pid"], signal.SIGKILL)
        wait_zombie_or_gone(victim["pid"])  # the loop is held: nothing is sent meanwhile
        time.sleep(0.02)  # the dead process's FIN crosses loopback to the server
        killed = time.monotonic()
        load.gate.set()
        back = await wait_restarted(server, victim["replica_id"])
        assert back["pid"] != victim["pid"]
        await asyncio.sleep(1.5)  # past the gateway's 1 s cooldown for a refusing endpoint
        await load.ok_after(time.monotonic(), 50)
        outcomes = await load.stop()
        during = [o for o in outcomes if killed <= o.sent and o.done <= killed + 1]
        assert during, "no request was sent while the replica was down"
        return outcomes

    outcomes = run(scenario, timeout_s=300)
    assert failures(outcomes) == []
    assert victim["replica_id"] in {o.replica for o in outcomes[-40:]}  # it serves again
    assert len(outcomes) > 200


def test_a_rollout_under_load_fails_no_request(server: Server, tmp_path: Path) -> None:
    """Deploy build 2 while clients call build 1: none fails; each answer is recorded under
    the build that gave it, and both builds have records."""
    first = server.deploy(project(tmp_path / "v1", 1))

    async def scenario() -> tuple[list[Outcome], dict[str, Any]]:
        load = Load(server.base, server.auth)
        await load.ok_after(0, 50)
        second = await asyncio.to_thread(server.deploy, project(tmp_path / "v2", 2))
        await load.ok_after(time.monotonic(), 50)
        return await load.stop(), second

    outcomes, second = run(scenario, timeout_s=300)
    assert failures(outcomes) == []
    versions = [o.version for o in outcomes]
    assert versions[0] == 1 and versions[-1] == 2
    assert second["build"]["crn"] != first["build"]["crn"]
    time.sleep(0.5)  # past the writer's flush interval
    records = server.records()
    builds = {1: first["build"]["crn"], 2: second["build"]["crn"]}
    assert {records[o.uuid] for o in outcomes if o.uuid} == set(builds.values())
    wrong = [o for o in outcomes if records[o.uuid or ""] != builds[o.version or 0]]
    assert wrong == []


def test_a_server_restart_brings_the_deployment_back_and_loses_no_record(
    server: Server, tmp_path: Path
) -> None:
    """SIGTERM the server under load, start it again on the same home and port: the deployment
    comes back with 2 fresh replicas and every answer of 200 (before and after) is in the
    store. Only requests around the restart may fail (refused while no server listens)."""
    outcome = server.deploy(project(tmp_path / "v1", 1))
    before = {s["pid"] for s in server.replicas()}

    async def scenario() -> tuple[list[Outcome], float, float]:
        load = Load(server.base, server.auth)
        await load.ok_after(0, 100)
        down = time.monotonic()
        code = await asyncio.to_thread(server.stop)
        assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), code
        await asyncio.to_thread(server.start)
        await load.ok_after(time.monotonic(), 1)
        up = time.monotonic()
        await load.ok_after(up, 100)
        return await load.stop(), down, up

    outcomes, down, up = run(scenario, timeout_s=300)
    # A failure must have ended after the SIGTERM and begun before the server was back: a
    # keep-alive request still in the socket when uvicorn closes its idle connections fails,
    # whenever it was sent.
    outside = [o for o in failures(outcomes) if o.done < down or o.sent > up]
    assert outside == []
    assert [o for o in outcomes if o.sent > up and o.status == 200]  # served after the restart
    status = server.status()
    assert status["active"]["crn"] == outcome["deployment"]["crn"]
    # The gateway admitted them on its own probe; the runtime's verdict follows within a poll.
    assert [view["in_pool"] for view in status["replicas"]] == [True, True]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = server.replicas()
        if len(states) == 2 and all(s["status"] == "healthy" for s in states):
            break
        time.sleep(0.05)
    assert [s["status"] for s in states] == ["healthy", "healthy"]
    assert {s["pid"] for s in states}.isdisjoint(before)
    server.stop()  # a clean stop flushes; then nothing else writes
    answered = {o.uuid for o in outcomes if o.status == 200}
    assert None not in answered and len(answered) >= 200
    assert answered <= set(server.records(outcome["model"]["crn"]))


def test_a_replica_killed_right_after_answering_loses_no_record(
    server: Server, tmp_path: Path
) -> None:
    """The gateway writes the records: a replica SIGKILLed the moment its answer arrived has
    nothing of that prediction to lose. Done for each replica, with no pause in between."""
    server.deploy(project(tmp_path / "v1", 1))
    pids = {s["replica_id"]: s["pid"] for s in server.replicas()}
    acknowledged = []
    with httpx.Client(base_url=server.base, headers=server.auth, timeout=30) as client:
        killed: set[str] = set()
        for x in range(50):
            answer = client.post(f"/api/v1/models/{MODEL}/predict", json={"x": x})
            body = answer.json()
            replica = body["ReplicaID"]
            if replica in killed:
                continue
            os.kill(pids[replica], signal.SIGKILL)
            assert answer.status_code == 200, answer.text
            acknowledged.append(body["uuid"])
            killed.add(replica)
            wait_zombie_or_gone(pids[replica])
            time.sleep(0.02)  # its FIN reaches the server: the next call goes to the other
            if killed == set(pids):
                break
    assert killed == set(pids)
    time.sleep(0.5)  # past the writer's flush interval (200 ms); the server keeps running
    records = server.records()
    assert set(acknowledged) <= set(records)
