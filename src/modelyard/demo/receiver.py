"""A local webhook receiver: where the demo's monitor sends its alerts.

A real team would point the monitor at Slack or an incident tool; the demo runs this small HTTP
server on 127.0.0.1 (a free port) and keeps every JSON body it receives, so the story can show
that the alert really left the monitor and arrived.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

__all__ = ["WebhookReceiver"]


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = orjson.loads(self.rfile.read(length))
                except orjson.JSONDecodeError:
                    body = {"unparsed": True}
                with owner._arrived:
                    owner.received.append(body if isinstance(body, dict) else {"body": body})
                    owner._arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:  # the job API checks a webhook answers when a job is made
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout_s: float) -> list[dict[str, Any]]:
        """The bodies received, once there are ``count`` of them or ``timeout_s`` has passed."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.received) >= count, timeout_s)
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
