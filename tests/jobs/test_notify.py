"""Notifications against real receivers: a local HTTP server and a local SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.jobs.notify import Delivery, Notifier, SmtpConfig, check_target, check_webhook
from modelyard.runtime import free_port

from .conftest import Inbox


class Receiver:
    """A loopback HTTP server that records POSTed JSON and answers ``statuses`` in turn."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self.send_response(405)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


SUMMARY = {
    "job": "nightly",
    "run": "crn:modelyard:run/0b7e",
    "state": "failed",
    "attempt": 2,
    "exit_code": 3,
    "duration_ms": 1234,
    "scheduled_at": "2026-09-21T00:00:00.000Z",
    "started_at": "2026-09-21T00:00:00.100Z",
    "ended_at": "2026-09-21T00:00:01.334Z",
    "log_tail": "Traceback...\nValueError: boom\n",
    "link": "http://127.0.0.1:8000/api/v1/runs/0b7e",
}


def test_targets_are_http_urls_or_addresses() -> None:
    assert check_target("https://hooks.example.com/x") == "webhook"
    assert check_target("http://127.0.0.1:9/x") == "webhook"
    assert check_target("ops@example.com") == "email"
    for bad in ("ftp://example.com/x", "file:///etc/passwd", "javascript://x", "not a target", ""):
        with pytest.raises(InvalidInput) as caught:
            check_target(bad)
        assert repr(bad) in caught.value.message
        assert "http://" in caught.value.message


def test_check_webhook_warns_for_an_unreachable_url_and_passes_a_live_one(
    receiver: Receiver,
) -> None:
    assert check_webhook(receiver.url) is None  # a 405 to GET still proves it is there
    dead = f"http://127.0.0.1:{free_port()}/hook"
    warning = check_webhook(dead, timeout_s=1)
    assert warning is not None and dead in warning and "not reachable" in warning
    with pytest.raises(InvalidInput):
        check_webhook("ftp://127.0.0.1/hook")


def test_webhook_is_retried_with_backoff_until_it_is_accepted() -> None:
    flaky = Receiver(statuses=[500, 503])
    seen: list[Delivery] = []
    notifier = Notifier(attempts=4, backoff_s=0.02, on_delivery=seen.append, use_settings=False)
    try:
        notifier.send([flaky.url], SUMMARY)
        assert notifier.wait_idle(10)
    finally:
        notifier.close()
        flaky.close()
    assert [b["state"] for b in flaky.bodies] == ["failed"] * 3
    assert flaky.bodies[-1] == SUMMARY
    assert seen == [Delivery(flaky.url, "webhook", True, 3, None)]


def test_a_dead_receiver_is_given_up_without_blocking_the_sender() -> None:
    seen: list[Delivery] = []
    notifier = Notifier(attempts=2, backoff_s=0.01, timeout_s=1, on_delivery=seen.append)
    dead = f"http://127.0.0.1:{free_port()}/hook"
    try:
        notifier.send([dead], SUMMARY)  # returns at once: delivery is on the notifier's thread
        assert notifier.wait_idle(10)
    finally:
        notifier.close()
    assert len(seen) == 1 and not seen[0].ok and seen[0].attempts == 2
    assert "ConnectError" in (seen[0].error or "")


def test_email_goes_to_a_local_smtp_server(
    smtp_server: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp_server
    monkeypatch.setenv("MODELYARD_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MODELYARD_SMTP_PORT", str(port))
    monkeypatch.setenv("MODELYARD_SMTP_FROM", "modelyard@test.invalid")
    seen: list[Delivery] = []
    notifier = Notifier(backoff_s=0.02, on_delivery=seen.append)
    assert notifier.smtp == SmtpConfig("127.0.0.1", port, "modelyard@test.invalid")
    try:
        notifier.send(["ops@example.com"], SUMMARY)
        assert notifier.wait_idle(10)
    finally:
        notifier.close()
    assert seen == [Delivery("ops@example.com", "email", True, 1, None)]
    [(sender, recipients, content)] = inbox.messages
    assert sender == "modelyard@test.invalid" and recipients == ["ops@example.com"]
    message = message_from_bytes(content)
    assert message["Subject"] == "[modelyard] job nightly run failed (attempt 2)"
    text = message.get_payload(decode=True).decode()
    assert "exit_code: 3" in text and "ValueError: boom" in text and SUMMARY["link"] in text


def test_email_without_smtp_settings_is_skipped(tmp_path: Path) -> None:
    seen: list[Delivery] = []
    notifier = Notifier(on_delivery=seen.append)
    try:
        notifier.send(["ops@example.com"], SUMMARY)
        assert notifier.wait_idle(5)
    finally:
        notifier.close()
    assert seen == [
        Delivery("ops@example.com", "email", False, 0, "MODELYARD_SMTP_HOST is not set")
    ]


def test_a_receiver_waiting_out_its_retries_does_not_hold_up_others(receiver: Receiver) -> None:
    notifier = Notifier(attempts=3, backoff_s=2.0, timeout_s=1, use_settings=False)
    dead = f"http://127.0.0.1:{free_port()}/hook"
    try:
        notifier.send([dead], SUMMARY)  # fails at once, then waits 2 s before its next attempt
        started = time.monotonic()
        notifier.send([receiver.url], SUMMARY)
        while not receiver.bodies and time.monotonic() - started < 5:
            time.sleep(0.01)
        waited = time.monotonic() - started
    finally:
        notifier.close(0.1)
    assert receiver.bodies == [SUMMARY]
    assert waited < 1.0
