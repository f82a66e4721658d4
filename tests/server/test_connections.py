"""Slow and idle connections against a real server process (raw sockets on 127.0.0.1): partial
headers, a partial body and a silent socket are closed within the stated timeouts, and the
number of open connections is capped."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from modelyard.runtime import free_port
from modelyard.server.connections import ConnectionLimits

from .conftest import start_server

HEADER_S = 1.0
BODY_S = 1.5
MAX_CONNECTIONS = 12


def _until_closed(sock: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server closes ``sock`` (reading all it sends), and what it sent."""
    started = time.monotonic()
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        pass
    return time.monotonic() - started, got


def test_defaults_match_the_documented_values() -> None:
    limits = ConnectionLimits.from_settings()
    assert (limits.header_timeout_s, limits.body_timeout_s) == (10.0, 30.0)
    assert (limits.max_connections, limits.keep_alive_s) == (1000, 5)
    text = (Path(__file__).parents[2] / "docs" / "server.md").read_text()
    for name in ("MODELYARD_HTTP_HEADER_TIMEOUT", "MODELYARD_HTTP_BODY_TIMEOUT",
                 "MODELYARD_HTTP_MAX_CONNECTIONS"):  # fmt: skip
        assert name in text


@pytest.mark.slow
def test_slow_and_idle_connections_are_closed(modelyard_home: Path, tmp_path: Path) -> None:
    port = free_port()
    settings = {
        "MODELYARD_HTTP_HEADER_TIMEOUT": f"{int(HEADER_S * 1000)}ms",
        "MODELYARD_HTTP_BODY_TIMEOUT": f"{int(BODY_S * 1000)}ms",
        "MODELYARD_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    server = start_server(modelyard_home, port, tmp_path / "server.log", settings=settings)
    opened: list[socket.socket] = []

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=HEADER_S + BODY_S + 10)
        opened.append(sock)
        return sock

    try:
        # A silent socket, and one that stops in the middle of its headers: 408, then closed.
        silent = connect()
        partial = connect()
        partial.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for sock in (silent, partial):
            took, got = _until_closed(sock)
            assert got.startswith(b"HTTP/1.1 408"), got
            assert b"MODELYARD_HTTP_HEADER_TIMEOUT" in got
            assert took < HEADER_S + 1.5, took

        # Headers that trickle in, one byte at a time, are bounded as a whole, not per byte.
        trickle = connect()
        started = time.monotonic()
        with pytest.raises(OSError):
            for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
                trickle.sendall(bytes([byte]))
                time.sleep(0.1)
                if time.monotonic() - started > HEADER_S + 5:
                    break
            trickle.recv(1)  # (reached only if the server never cut it off)
            raise AssertionError("a trickling header section was never cut off")
        assert time.monotonic() - started < HEADER_S + 2.5

        # A body that stops half way (no key needed to hold it open): closed after BODY_S.
        body = connect()
        body.sendall(
            b"POST /api/v1/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"name": '
        )
        took, got = _until_closed(body)
        assert got == b"", got
        assert took < BODY_S + 1.5, took

        # A normal client on a kept-alive connection is unaffected.
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
                time.sleep(HEADER_S / 2)

        # The cap: MAX_CONNECTIONS open, one more is answered 503 and closed at once.
        held = [connect() for _ in range(MAX_CONNECTIONS)]
        time.sleep(0.2)
        took, got = _until_closed(connect())
        assert got.startswith(b"HTTP/1.1 503"), got
        assert b"MODELYARD_HTTP_MAX_CONNECTIONS=12" in got
        assert took < 1.0
        for sock in held:  # they time out in turn; then the server takes connections again
            _until_closed(sock)
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        for sock in opened:
            sock.close()
        server.stop()
