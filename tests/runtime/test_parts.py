"""The small parts: backoff delays, environment building, health checks, ports, public names."""

from __future__ import annotations

import doctest
import http.server
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import modelyard.runtime as runtime_pkg
from modelyard.errors import InvalidInput
from modelyard.runtime import Backoff, SupervisorConfig, free_port, local
from modelyard.runtime.health import check_health
from modelyard.runtime.procs import build_env


def test_backoff_doubles_to_its_cap_without_jitter() -> None:
    backoff = Backoff(base_s=1.0, cap_s=30.0, jitter=0.0, stable_after_s=60.0)
    delays = [backoff.next_delay(ran_for_s=0.1) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_backoff_resets_after_a_stable_run() -> None:
    backoff = Backoff(base_s=1.0, cap_s=30.0, jitter=0.0, stable_after_s=60.0)
    for _ in range(4):
        backoff.next_delay(ran_for_s=1.0)
    assert backoff.next_delay(ran_for_s=59.0) == 16.0
    assert backoff.next_delay(ran_for_s=60.0) == 1.0
    assert backoff.next_delay(ran_for_s=0.0) == 2.0


def test_backoff_jitter_stays_within_its_fraction_and_spreads() -> None:
    delays = []
    for seed in range(200):
        backoff = Backoff(base_s=2.0, jitter=0.2, rng=random.Random(seed))
        delays.append(backoff.next_delay(0.0))
    assert all(1.6 <= d <= 2.4 for d in delays)
    assert max(delays) - min(delays) > 0.5  # not all the same: replicas do not restart in step


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"base_s": 0}, "base_s=0"),
        ({"base_s": 5, "cap_s": 1}, "cap_s=1"),
        ({"factor": 0.5}, "factor=0.5"),
        ({"jitter": 1.0}, "jitter=1.0"),
    ],
)
def test_backoff_refuses_bad_settings(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        Backoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"poll_interval_s": 0}, "poll_interval_s=0"),
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
        code = 200 if self.path in ("/ok", "/slow") else 503
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

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
