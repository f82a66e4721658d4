"""The small parts: environment building, health checks, ports, public names."""

from __future__ import annotations

import doctest
import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import modelyard.runtime as runtime_pkg
from modelyard.errors import InvalidInput
from modelyard.runtime import SupervisorConfig, free_port, local
from modelyard.runtime.health import check_health
from modelyard.runtime.procs import build_env


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"poll_interval_s": 0}, "poll_interval_s=0"),
        ({"backoff_base_s": 0}, "backoff_base_s=0"),  # a restart loop must wait
        ({"stop_grace_s": -1}, "stop_grace_s=-1"),
        ({"health_failures_to_recycle": 0}, "health_failures_to_recycle=0"),
    ],
)
def test_supervisor_config_refuses_bad_settings(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        SupervisorConfig(**kwargs)  # type: ignore[arg-type]


def test_build_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_PARENT", "1")
    env = build_env({"A": "a", "PYTHONUNBUFFERED": "0"}, inherit=True, added={"MODELYARD_X": "x"})
    assert env["FROM_PARENT"] == "1" and env["A"] == "a" and env["MODELYARD_X"] == "x"
    assert env["PYTHONUNBUFFERED"] == "0"  # the spec's own choice wins
    alone = build_env({"A": "a"}, inherit=False, added={})
    assert alone == {"A": "a", "PYTHONUNBUFFERED": "1"}
    with pytest.raises(InvalidInput, match="entry ''='v'"):
        build_env({"": "v"}, inherit=False, added={})
    with pytest.raises(InvalidInput, match="1"):
        build_env({"A": 1}, inherit=False, added={})  # type: ignore[dict-item]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
        code = 200 if self.path in ("/ok", "/slow", "/named", "/text") else 503
        body = {"/named": b'{"status": "ok", "replica": "r1"}', "/text": b"ok"}.get(self.path, b"")
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_health_check_answers(http_port: int) -> None:
    assert check_health(http_port, "/ok", 2.0) == (True, "")
    assert check_health(http_port, "/bad", 2.0) == (False, "HTTP 503")
    started = time.monotonic()
    ok, why = check_health(http_port, "/slow", 0.2)
    assert not ok and "timed out" in why
    assert time.monotonic() - started < 0.9
    ok, why = check_health(free_port(), "/ok", 1.0)
    assert not ok and "ConnectionRefusedError" in why


def test_health_check_naming_a_replica_accepts_only_that_replica(http_port: int) -> None:
    assert check_health(http_port, "/named", 2.0, replica_id="r1") == (True, "")
    ok, why = check_health(http_port, "/named", 2.0, replica_id="r2")
    assert not ok and "not from replica 'r2'" in why
    assert not check_health(http_port, "/text", 2.0, replica_id="r1")[0]  # not JSON
    assert not check_health(http_port, "/ok", 2.0, replica_id="r1")[0]  # names nobody
    assert check_health(http_port, "/bad", 2.0, replica_id="r1") == (False, "HTTP 503")


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_public_names_are_importable_and_the_example_runs() -> None:
    for name in runtime_pkg.__all__:
        assert hasattr(runtime_pkg, name), name
    assert sorted(runtime_pkg.__all__) == runtime_pkg.__all__
    result = doctest.testmod(local, raise_on_error=False)
    assert result.attempted >= 1 and result.failed == 0
