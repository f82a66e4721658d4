"""SIGKILL a replica at random moments under concurrent load: a resendable model loses no request.

Real parts: two replica processes (``python -m modelyard.serving.replica``) on Unix sockets in a
0700 folder, the real ``Gateway`` and ``DeploymentPool`` (the server's own request path, called
in-process so the clients cost no HTTP of their own), records through a real ``BufferedWriter``
into a real SQLite store. The test plays the supervisor: a killed replica is started again on
the same socket, as the runtime would.

Clients (c=8 or c=64) call the model without pause; the function sleeps 2 ms, so the replica
being killed holds requests inside it. A kill waits until the victim has requests in flight,
then SIGKILLs it at a random moment. Checked: no request fails, at least one request was resent
(the proof that requests did die inside a replica), every answered uuid is in the store exactly
once, and a model declared not resendable (``retry=false``) gets 502 for the requests that died.

Marked ``slow``: replicas start and restart, a server deploys (about 40 s in all).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from _async import run
from modelyard.runtime.health import check_health
from modelyard.serving.gateway import (
    DeploymentPool,
    Gateway,
    GatewayResult,
    PoolSettings,
    ReplicaEndpoint,
)
from modelyard.store import BufferedWriter, Identity, Query, RecordKind
from modelyard.store.sqlite import SQLiteStore

pytestmark = pytest.mark.slow

PREDICT = """
    import time

    import modelyard


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("x", args["x"])
        time.sleep(0.002)
        return {"double": args["x"] * 2}
"""
KILLS = 3
CONCURRENCY = 8  # of each replica


class Replicas:
    """Replica processes on Unix sockets in a private folder; killed and started again here."""

    def __init__(self, project: Path, logs: Path) -> None:
        self.project = project
        self.logs = logs
        # mkdtemp makes the folder 0700; a short path keeps the socket under sun_path's limit.
        self.folder = Path(tempfile.mkdtemp(prefix="my-kill-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def socket(self, replica_id: str) -> str:
        return str(self.folder / f"{replica_id}.sock")

    def start(self, replica_id: str) -> None:
        argv = [sys.executable, "-m", "modelyard.serving.replica", "--snapshot", str(self.project)]
        argv += ["--file", "predict.py", "--function", "predict", "--replica-id", replica_id]
        argv += ["--socket", self.socket(replica_id), "--concurrency", str(CONCURRENCY)]
        with (self.logs / f"{replica_id}.log").open("ab") as log:
            self.procs[replica_id] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not check_health(self.socket(replica_id), "/healthz", 1.0, replica_id)[0]:
            code = self.procs[replica_id].poll()
            assert code is None, f"replica {replica_id} exited with {code}"
            assert time.monotonic() < deadline, f"replica {replica_id} not healthy within 60 s"
            time.sleep(0.02)

    def kill(self, replica_id: str) -> None:
        proc = self.procs[replica_id]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "predict.py").write_text(textwrap.dedent(PREDICT))
    started = Replicas(project, tmp_path)
    try:
        for replica_id in ("r1", "r2"):
            started.start(replica_id)
        yield started
    finally:
        started.close()


async def _kill_under_load(
    replicas: Replicas, pool: DeploymentPool, gateway: Gateway, clients: int, seed: int
) -> list[GatewayResult]:
    results: list[GatewayResult] = []
    stop = asyncio.Event()
    chooser = random.Random(seed)

    async def client(index: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            body = orjson.dumps({"x": index * 1_000_000 + n})
            results.append(await gateway.invoke("m", body))

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    for _ in range(KILLS):
        await asyncio.sleep(chooser.uniform(0.1, 0.4))
        victim = chooser.choice(["r1", "r2"])
        deadline = time.monotonic() + 10
        while next(e for e in pool.endpoints() if e.replica_id == victim).in_flight == 0:
            assert time.monotonic() < deadline, f"no request reached {victim} within 10 s"
            await asyncio.sleep(0.0005)
        replicas.kill(victim)  # blocks the loop for the kill only: the requests are in it
        await asyncio.to_thread(replicas.start, victim)  # the supervisor's restart
        pool.set_healthy(victim, True)  # as the controller does when it reports healthy
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    return results


def _scenario(
    replicas: Replicas, tmp_path: Path, clients: int, resend: bool, caplog: pytest.LogCaptureFixture
) -> tuple[list[GatewayResult], Counter[str], int]:
    ident = Identity(
        f"crn:modelyard:model/{uuid.uuid4()}",
        f"crn:modelyard:build/{uuid.uuid4()}",
        f"crn:modelyard:deployment/{uuid.uuid4()}",
    )
    store = SQLiteStore(tmp_path / "metrics.db")
    writer = BufferedWriter(store, flush_interval_ms=50)
    seed = random.randrange(1 << 30)

    async def scenario() -> list[GatewayResult]:
        pool = DeploymentPool(ident, PoolSettings(resend=resend, max_queue=1000))
        for replica_id in ("r1", "r2"):
            url = f"unix:{replicas.socket(replica_id)}"
            pool.add_endpoint(ReplicaEndpoint(replica_id, url, CONCURRENCY))
        gateway = Gateway(writer)
        gateway.set_pool("m", pool)
        try:
            return await _kill_under_load(replicas, pool, gateway, clients, seed)
        finally:
            await gateway.close()

    with caplog.at_level(logging.WARNING, logger="modelyard.gateway"):
        results = run(scenario, timeout_s=240)
    resent = sum("resending it once" in r.getMessage() for r in caplog.records)
    writer.close()
    recorded: Counter[str] = Counter()
    kinds = frozenset({RecordKind.PREDICTION})
    for batch in store.scan(Query(deployment_crn=ident.deployment_crn, kinds=kinds)):
        recorded.update(u for u in batch.uuid if u is not None)
    store.close()
    print(f"seed {seed}: {len(results)} requests, {resent} resent")  # shown when a test fails
    return results, recorded, resent


@pytest.mark.parametrize("clients", [8, 64])
def test_a_replica_killed_under_load_costs_no_request(
    replicas: Replicas, tmp_path: Path, clients: int, caplog: pytest.LogCaptureFixture
) -> None:
    results, recorded, resent = _scenario(replicas, tmp_path, clients, True, caplog)
    statuses = Counter(r.http_status for r in results)
    assert statuses == {200: len(results)}, [r.envelope for r in results if r.http_status != 200]
    assert resent >= 1, "no request died inside a killed replica: the test proved nothing"
    answered = [r.uuid for r in results]
    assert len(set(answered)) == len(answered)  # one uuid per request, resent or not
    assert set(recorded) == set(answered)
    assert set(recorded.values()) == {1}, "a record was written twice"
    for result in results[:: max(1, len(results) // 50)]:  # the answer is the function's
        assert result.envelope["response"]["uuid"] == result.uuid


def test_a_model_declared_not_resendable_gets_502(
    replicas: Replicas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results, recorded, resent = _scenario(replicas, tmp_path, 8, False, caplog)
    statuses = Counter(r.http_status for r in results)
    assert resent == 0
    assert set(statuses) == {200, 502} and statuses[502] >= 1, statuses
    for failed in (r for r in results if r.http_status == 502):
        assert failed.envelope["error"]["code"] == "replica_failed"
        assert "retry=false" in failed.envelope["error"]["message"]
    answered = {r.uuid for r in results if r.http_status == 200}
    assert set(recorded) == answered and set(recorded.values()) == {1}


def test_no_door_around_the_gateway(replicas: Replicas, tmp_path: Path) -> None:
    """A replica listens on no TCP port; its folder is 0700 and its socket 0600, both ours; and
    another user (``nobody``, when this runs as root) cannot even connect to the socket, while
    the same probe does connect to a socket left open on purpose (so the probe can tell)."""
    for proc in replicas.procs.values():
        listening = [
            c for c in psutil.Process(proc.pid).net_connections("inet") if c.status == "LISTEN"
        ]
        assert listening == []
    info = os.stat(replicas.folder)
    assert info.st_mode & 0o777 == 0o700 and info.st_uid == os.getuid()
    sock = os.stat(replicas.socket("r1"))
    assert sock.st_mode & 0o777 == 0o600 and sock.st_uid == os.getuid()
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.getuid() != 0 or python is None:
        pytest.skip("connecting as another user needs root and a system python3")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    open_folder = Path(tempfile.mkdtemp(prefix="my-open-"))
    try:
        open_folder.chmod(0o755)
        control = socket.socket(socket.AF_UNIX)
        control.bind(str(open_folder / "open.sock"))
        os.chmod(open_folder / "open.sock", 0o777)
        control.listen(1)
        with control:
            assert _connect_as_nobody(python, str(open_folder / "open.sock")) == "connected"
            assert _connect_as_nobody(python, replicas.socket("r1")) == "refused"
    finally:
        shutil.rmtree(open_folder, ignore_errors=True)


def _connect_as_nobody(python: str, path: str) -> str:
    probe = textwrap.dedent(
        f"""
        import socket
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect({path!r})
        except PermissionError:
            print("refused")
        else:
            print("connected")
        """
    )
    done = subprocess.run(
        [python, "-c", probe],
        user="nobody",
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() or done.stderr


def test_a_servers_replicas_listen_only_on_a_private_socket(
    tmp_path: Path, modelyard_home: Path
) -> None:
    """Through a real ``modelyard server``: a deployed replica has a Unix socket in a 0700
    folder and no TCP port; the model's ``retry: false`` declaration (REST) is stored."""
    from modelyard.demo.server_process import ServerProcess

    project = tmp_path / "project"
    project.mkdir()
    (project / "predict.py").write_text(textwrap.dedent(PREDICT))
    modelyard_home.mkdir(mode=0o700, exist_ok=True)
    server = ServerProcess(modelyard_home)
    try:
        auth = {"Authorization": f"Bearer {(modelyard_home / 'admin.key').read_text().strip()}"}
        body = {"project": str(project), "example": {"x": 1}, "settings": {"retry": False}}
        with httpx.Client(base_url=server.url, headers=auth, timeout=120) as client:
            deployed = client.post("/api/v1/models/churn/deploy", json=body)
            assert deployed.status_code == 201, deployed.text
            status = client.get("/api/v1/models/churn").json()
            answer = client.post("/api/v1/models/churn/predict", json={"x": 4})
        assert status["model"]["settings"]["retry"] is False
        assert answer.status_code == 200, answer.text
        assert answer.json()["response"] == {
            "prediction": {"double": 8},
            "uuid": answer.json()["uuid"],
        }
        (view,) = status["replicas"]
        replica = psutil.Process(view["state"]["pid"])
        argv = replica.cmdline()
        path = Path(argv[argv.index("--socket") + 1])
        assert [c for c in replica.net_connections("inet") if c.status == "LISTEN"] == []
        assert path.name == f"{view['state']['replica_id']}.sock"
        folder = os.stat(path.parent)
        assert folder.st_mode & 0o777 == 0o700 and folder.st_uid == os.getuid()
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        server.stop()
