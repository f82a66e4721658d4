"""Replicas on Unix sockets: the folder rules, the process on its socket, the uuid the gateway
sends, and the ``retry`` declaration from the CLI flag to the pool.

Real parts: real replica processes, real sockets and folders; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from modelyard.cli.models_cmd import _model_settings
from modelyard.errors import InvalidInput
from modelyard.registry import ModelSettings
from modelyard.runtime.health import check_health
from modelyard.serving.controller.replica_specs import socket_folder, socket_path
from modelyard.serving.controller.rollout import pool_settings
from modelyard.serving.gateway.replica_client import ReplicaClient
from modelyard.serving.replica.oneshot import OneWriteTransport
from modelyard.serving.replica.process import bind_unix_socket, parse_args
from modelyard.serving.replica.user_code import batch_item_uuid

PREDICT = """
    import modelyard


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("x", args["x"])
        return {"double": args["x"] * 2}
"""
BASE = "0190f0b2-6a2b-7c3d-8e4f-00000000fffe"


@pytest.fixture
def short_folder() -> Iterator[Path]:
    """A 0700 folder with a short path (``tmp_path`` may be too deep for a socket)."""
    folder = Path(tempfile.mkdtemp(prefix="my-sock-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # a replica may have removed it already


# -- the folder and the socket file -----------------------------------------------------------
def test_socket_folder_under_the_home_is_0700_and_tightened(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="my-home-"))
    try:
        (home / "run" / "replicas").mkdir(parents=True, mode=0o755)
        os.chmod(home / "run" / "replicas", 0o755)
        folder = socket_folder(home)
        assert folder == home / "run" / "replicas"
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(home / "run").st_mode) == 0o700
        assert socket_path(home, "abc-r1-123456") == folder / "abc-r1-123456.sock"
    finally:
        for path in sorted(home.rglob("*"), reverse=True):
            path.rmdir()
        home.rmdir()


def test_a_home_too_deep_for_sun_path_falls_back_to_a_short_private_folder(
    short_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / ("deep" * 20)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_folder))
    folder = socket_folder(home)
    assert folder.parent == short_folder and folder.name.startswith(f"modelyard-{os.getuid()}-")
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert socket_folder(home) == folder  # the same home, the same folder
    assert len(os.fsencode(socket_path(home, "x" * 32))) < 104
    with pytest.raises(InvalidInput, match="at most 32"):
        socket_path(home, "x" * 33)
    os.chmod(folder, 0o755)  # someone opened it: refused, not tightened (it may not be ours)
    with pytest.raises(InvalidInput, match="has mode 755; it must be 0700"):
        socket_folder(home)
    folder.rmdir()
    # XDG_RUNTIME_DIR and TMPDIR too deep as well: /tmp, the last resort.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_folder / ("x" * 120)))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    fallback = socket_folder(home)
    try:
        assert fallback.parent == Path("/tmp") and fallback.name == folder.name
    finally:
        fallback.rmdir()


def test_bind_refuses_an_open_folder_and_anything_but_a_stale_socket(
    short_folder: Path,
) -> None:
    path = str(short_folder / "r.sock")
    os.chmod(short_folder, 0o755)
    with pytest.raises(InvalidInput, match=r"mode 755.*must be mode 0700"):
        bind_unix_socket(path)
    os.chmod(short_folder, 0o700)
    Path(path).write_text("not a socket")
    with pytest.raises(InvalidInput, match="exists and is not a socket"):
        bind_unix_socket(path)
    os.unlink(path)
    os.rmdir(short_folder)  # removed (the last replica left, or a cleaner): made again, 0700
    bind_unix_socket(path).close()  # closed, not unlinked: what a SIGKILLed replica leaves
    assert stat.S_IMODE(os.stat(short_folder).st_mode) == 0o700
    with socket.socket(socket.AF_UNIX) as other, pytest.raises(OSError):
        other.bind(path)  # the stale file is in the way of a plain bind...
    sock = bind_unix_socket(path)  # ...and replaced by the replica's
    with sock:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)  # it listens


def test_socket_or_port_is_required_and_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--snapshot", "/s", "--file", "p.py", "--function", "f", "--replica-id", "r"]
    config = parse_args([*common, "--socket", "/run/r.sock"])
    assert (config.socket, config.port) == ("/run/r.sock", None)
    assert parse_args(config.argv()[3:]) == config
    for extra in ([], ["--socket", "/a", "--port", "8000"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_args([*common, *extra])
        assert exit_info.value.code == 2
    assert "--socket" in capsys.readouterr().err


# -- a real replica on its socket -------------------------------------------------------------
@pytest.fixture
def replica(short_folder: Path, tmp_path: Path) -> Iterator[str]:
    (tmp_path / "predict.py").write_text(textwrap.dedent(PREDICT))
    path = str(short_folder / "r1.sock")
    argv = [sys.executable, "-m", "modelyard.serving.replica", "--snapshot", str(tmp_path)]
    argv += ["--file", "predict.py", "--function", "predict", "--replica-id", "r1"]
    with (tmp_path / "replica.log").open("wb") as log:
        proc = subprocess.Popen([*argv, "--socket", path], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not check_health(path, "/healthz", 1.0, "r1")[0]:
            assert proc.poll() is None, (tmp_path / "replica.log").read_text()
            assert time.monotonic() < deadline, "the replica did not become healthy in 60 s"
            time.sleep(0.02)
        listening = [
            c for c in psutil.Process(proc.pid).net_connections("inet") if c.status == "LISTEN"
        ]
        assert listening == []  # no TCP port: only the socket
        yield path
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    assert not os.path.exists(path)  # a clean stop removes its socket
    assert not os.path.exists(os.path.dirname(path))  # and the folder it left empty


def test_a_replica_on_its_socket_answers_with_the_uuid_it_was_sent(replica: str) -> None:
    assert check_health(replica, "/healthz", 1.0, "r2") == (
        False,
        f"the answer on socket {replica} is not from replica 'r2'",
    )

    async def scenario() -> list[tuple[int, bytes]]:
        client = ReplicaClient(f"unix:{replica}")
        header = f"X-Modelyard-Prediction-Uuid: {BASE}\r\n".encode()
        try:
            return [
                await client.post("/invoke", b'{"x": 3}', header),
                await client.post("/invoke_batch", b'[{"x": 1}, {"x": 2}, {"x": 3}]', header),
                await client.post("/invoke", b'{"x": 3}'),
                await client.post("/invoke", b'{"x": 3}', b"X-Modelyard-Prediction-Uuid: 42\r\n"),
            ]
        finally:
            await client.close()

    single, batch, minted, bad = asyncio.run(scenario())
    answer = orjson.loads(single[1])
    assert single[0] == 200
    assert answer["record"]["predictionUuid"] == BASE
    assert answer["output"] == {"prediction": {"double": 6}, "uuid": BASE}  # the decorator's too
    assert answer["record"]["metrics"] == {"x": 3}
    items = orjson.loads(batch[1])["results"]
    expected = [
        BASE,
        "0190f0b2-6a2b-7c3d-8e4f-00000000ffff",
        "0190f0b2-6a2b-7c3d-8e4f-000000010000",
    ]
    assert [item["record"]["predictionUuid"] for item in items] == expected
    assert [item["output"]["uuid"] for item in items] == expected
    record = orjson.loads(minted[1])["record"]
    assert record["predictionUuid"] != BASE and uuid.UUID(record["predictionUuid"])
    assert bad[0] == 400 and b"'42' is not a uuid" in bad[1]


def test_batch_item_uuids_keep_version_and_variant() -> None:
    base = str(uuid.uuid4())
    derived = [uuid.UUID(batch_item_uuid(base, i)) for i in range(5)]
    assert str(derived[0]) == base
    assert len(set(derived)) == 5
    assert {(d.version, d.variant) for d in derived} == {(4, uuid.RFC_4122)}
    top = batch_item_uuid("0190f0b2-6a2b-7c3d-8e4f-ffffffffffff", 1)
    assert top == "0190f0b2-6a2b-7c3d-8e4f-000000000000"  # wraps inside the low 48 bits


# -- the declaration ----------------------------------------------------------------------------
def test_retry_is_a_model_setting_from_the_cli_flag_to_the_pool() -> None:
    options = {
        "batch_function": None,
        "concurrency": None,
        "timeout": None,
        "no_auth": False,
        "track_io": False,
        "debug": False,
    }
    assert "retry" not in _model_settings({**options, "no_retry": False})
    chosen = _model_settings({**options, "no_retry": True})
    assert chosen == {"retry": False}
    settings = ModelSettings().replace(**chosen)
    assert ModelSettings.from_json(settings.to_json()).retry is False  # as the registry stores it
    assert pool_settings(settings).resend is False
    assert pool_settings(ModelSettings()).resend is True
    with pytest.raises(InvalidInput, match="retry='no' is not a boolean"):
        ModelSettings(retry="no")  # type: ignore[arg-type]


# -- one write per answer -----------------------------------------------------------------------
def test_a_response_head_leaves_with_its_body_in_one_write() -> None:
    """``OneWriteTransport`` over a real socket pair: the transport below sees the head and body
    as one write, a lone head on the next loop turn, other writes at once, a held head before a
    close; the peer reads every byte in order."""
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
    lone = b"HTTP/1.1 204 No Content\r\n\r\n"

    async def scenario() -> tuple[list[bytes], bytes]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        writes: list[bytes] = []

        class Counting:  # the real transport, its writes counted
            def write(self, data: bytes) -> None:
                writes.append(bytes(data))
                transport.write(data)

            def __getattr__(self, name: str) -> object:
                return getattr(transport, name)

        wrapped = OneWriteTransport(Counting(), loop)  # type: ignore[arg-type]
        wrapped.write(head)
        assert writes == []
        wrapped.write(b"{}")
        assert writes == [head + b"{}"]
        wrapped.write(lone)
        assert len(writes) == 1
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert writes[-1] == lone
        wrapped.write(b"2\r\nok\r\n")  # not a head: straight through
        assert writes[-1] == b"2\r\nok\r\n"
        wrapped.write(head)
        wrapped.close()  # a held head goes out before the close
        assert writes[-1] == head
        received = b""
        theirs.setblocking(False)
        while not received.endswith(head):
            try:
                received += theirs.recv(65536)
            except BlockingIOError:
                await asyncio.sleep(0.001)
        theirs.close()
        return writes, received

    writes, received = asyncio.run(scenario())
    assert received == b"".join(writes) == head + b"{}" + lone + b"2\r\nok\r\n" + head
