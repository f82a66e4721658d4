"""Fixtures for the tracking SDK tests: fresh backends per test and a real loopback HTTP server."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from modelyard.tracking import backends, run_uploads, track


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no open backend and the once-only warning not yet shown."""
    monkeypatch.delenv("MODELYARD_RUN_ID", raising=False)
    backends.close_all()
    track._warned = False
    yield
    backends.close_all()
    track._warned = False
    run_uploads.forget()  # nothing to send at exit for a test's run


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class LoopbackServer:
    """A stdlib HTTP server on 127.0.0.1 answering with ``handler(method, path, body)``."""

    url: str
    requests: list[Seen] = field(default_factory=list)


Handler = Callable[[str, str, Any], tuple[int, Any]]


@pytest.fixture
def http_server() -> Iterator[Callable[[Handler], LoopbackServer]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(handler: Handler) -> LoopbackServer:
        seen: list[Seen] = []

        class Answer(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                seen.append(Seen(self.command, self.path, dict(self.headers), body))
                status, payload = handler(self.command, self.path, body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        host, port = server.server_address[:2]
        return LoopbackServer(url=f"http://{host}:{port}", requests=seen)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
