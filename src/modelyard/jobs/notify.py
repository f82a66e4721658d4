"""Notifications of finished runs: a webhook POST with a JSON summary, or an e-mail over SMTP.

A job's ``notify`` list holds targets: ``http://`` or ``https://`` URLs (webhooks) and e-mail
addresses. ``notify_on`` picks which final states notify (``success``, ``failure``, ``timeout``,
``cancelled``). Sending happens on a few background threads with their own queue, so a slow or
dead receiver never delays the scheduler or the next run; each delivery is retried with exponential
back-off and jitter, and a delivery that still fails is logged, never raised.

E-mail needs ``MODELYARD_SMTP_HOST`` (and optionally port, from, user, password, STARTTLS, see
``docs/configuration.md``); without it e-mail targets are skipped with a log line.
"""

from __future__ import annotations

import logging
import queue
import random
import smtplib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import orjson

from modelyard import settings
from modelyard.backoff import Backoff
from modelyard.errors import InvalidInput
from modelyard.specs.notify import check_target

__all__ = [
    "LOG_TAIL_LINES",
    "NOTIFY_EVENTS",
    "Delivery",
    "Notifier",
    "SmtpConfig",
    "check_target",
    "check_webhook",
    "log_tail",
]

LOG_TAIL_LINES = 40
# The notify_on words, and which final run states each one covers.
NOTIFY_EVENTS: dict[str, frozenset[str]] = {
    "success": frozenset({"succeeded"}),
    "failure": frozenset({"failed"}),
    "timeout": frozenset({"timed_out"}),
    "cancelled": frozenset({"cancelled"}),
}
_TAIL_LINE_CHARS = 500

log = logging.getLogger(__name__)


def check_webhook(url: str, timeout_s: float = 3.0) -> str | None:
    """None when ``url`` answers an HTTP request, else a warning saying why it did not.

    Called when a job is created or updated: an unreachable receiver is a warning, not a
    refusal (it may come up later). Any HTTP answer counts as reachable, a 405 to this GET
    included, since the receiver only has to accept POSTs. A URL that is not http(s) raises.
    """
    if check_target(url) != "webhook":
        raise InvalidInput(f"notify target {url!r} is not a webhook URL; expected http(s)://...")
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
            client.get(url)
    except httpx.HTTPError as exc:
        return (
            f"webhook {url} is not reachable now ({exc.__class__.__name__}: {exc}); the job "
            "is kept and notifications will be tried at each run"
        )
    return None


def log_tail(path: str | Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a run log ('' when there is none), long lines cut."""
    if path is None:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            last = deque(handle, maxlen=lines)
    except OSError:
        return ""
    return "".join(
        line if len(line) <= _TAIL_LINE_CHARS else line[:_TAIL_LINE_CHARS] + "...\n"
        for line in last
    )


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where e-mail goes; ``from_settings()`` reads the ``MODELYARD_SMTP_*`` variables."""

    host: str
    port: int = 25
    sender: str = "modelyard@localhost"
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls) -> SmtpConfig | None:
        host = settings.get("smtp_host")
        if not host:
            return None
        return cls(
            host=str(host),
            port=int(settings.get("smtp_port")),
            sender=str(settings.get("smtp_from")),
            user=settings.get("smtp_user"),
            password=settings.get("smtp_password"),
            starttls=bool(settings.get("smtp_starttls")),
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one notification to one target (kept for tests and the log)."""

    target: str
    kind: str
    ok: bool
    attempts: int
    error: str | None


class Notifier:
    """Sends run summaries to notify targets on ``workers`` background threads (4).

    ``attempts`` deliveries per target at most, waiting ``backoff_s``, then twice that, and so
    on, each wait shaken by +-20 % so receivers that came back are not hit in lockstep. ``smtp``
    defaults to the settings (None: no e-mail). ``on_delivery`` sees every outcome.
    """

    def __init__(
        self,
        *,
        attempts: int = 4,
        backoff_s: float = 1.0,
        timeout_s: float = 10.0,
        smtp: SmtpConfig | None = None,
        use_settings: bool = True,
        on_delivery: Callable[[Delivery], None] | None = None,
        rng: random.Random | None = None,
        workers: int = 4,
    ) -> None:
        if attempts < 1 or backoff_s < 0 or timeout_s <= 0 or workers < 1:
            raise InvalidInput(
                f"Notifier attempts={attempts!r}, backoff_s={backoff_s!r}, timeout_s="
                f"{timeout_s!r}, workers={workers!r}: need attempts >= 1, backoff_s >= 0, "
                "timeout_s > 0 and workers >= 1"
            )
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._backoff = Backoff(base_s=backoff_s, cap_s=None, jitter=0.2)
        self.timeout_s = timeout_s
        self.smtp = smtp if smtp is not None or not use_settings else SmtpConfig.from_settings()
        self._on_delivery = on_delivery
        self._rng = rng or random.Random()
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False)
        # A few senders, so one dead receiver waiting out its retries does not hold up the
        # notifications of other runs.
        self._threads = [
            threading.Thread(target=self._loop, name=f"modelyard-notify-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def send(self, targets: Sequence[str], summary: Mapping[str, Any]) -> None:
        """Queue ``summary`` for each target and return at once."""
        body = dict(summary)
        for target in targets:
            with self._idle:
                self._pending += 1
            self._queue.put((target, body))

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Block until every queued notification was delivered or given up (True) or timeout."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after what is queued (waiting at most ``timeout_s``); drop the rest."""
        self.wait_idle(timeout_s)
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._client.close()

    # -- the worker ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            target, body = item
            try:
                self._deliver(target, body)
            except Exception:  # a bug here must not kill the thread that serves every run
                log.exception("notification to %s failed unexpectedly", target)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, target: str, body: dict[str, Any]) -> None:
        try:
            kind = check_target(target)
        except InvalidInput as exc:
            self._report(Delivery(target, "invalid", False, 0, exc.message))
            return
        if kind == "email" and self.smtp is None:
            log.info("e-mail to %s skipped: MODELYARD_SMTP_HOST is not set", target)
            self._report(Delivery(target, kind, False, 0, "MODELYARD_SMTP_HOST is not set"))
            return
        send = self._post if kind == "webhook" else self._mail
        error = None
        for attempt in range(1, self.attempts + 1):
            try:
                send(target, body)
            except Exception as exc:  # every failure of a receiver is retried the same way
                error = f"{exc.__class__.__name__}: {exc}"
                wait_s = self._backoff.delay(attempt, self._rng)
                if attempt < self.attempts and not self._stop.wait(wait_s):
                    continue
                break
            self._report(Delivery(target, kind, True, attempt, None))
            return
        log.warning("notification to %s gave up after %d attempts: %s", target, attempt, error)
        self._report(Delivery(target, kind, False, attempt, error))

    def _post(self, url: str, body: dict[str, Any]) -> None:
        response = self._client.post(
            url, content=orjson.dumps(body), headers={"content-type": "application/json"}
        )
        response.raise_for_status()

    def _mail(self, address: str, body: dict[str, Any]) -> None:
        smtp = self.smtp
        assert smtp is not None  # checked by _deliver
        message = EmailMessage()
        message["From"] = smtp.sender
        message["To"] = address
        message["Subject"] = (
            f"[modelyard] job {body.get('job')} run {body.get('state')} "
            f"(attempt {body.get('attempt')})"
        )
        message.set_content(_mail_text(body))
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            if smtp.starttls:
                client.starttls()
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            client.send_message(message)

    def _report(self, delivery: Delivery) -> None:
        if self._on_delivery is None:
            return
        try:
            self._on_delivery(delivery)
        except Exception:
            log.exception("on_delivery handler failed for %s", delivery.target)


def _mail_text(body: Mapping[str, Any]) -> str:
    fields = ["job", "run", "state", "attempt", "exit_code", "duration_ms", "scheduled_at"]
    fields += ["started_at", "ended_at", "link"]
    lines = [f"{name}: {body.get(name)}" for name in fields]
    tail = body.get("log_tail") or ""
    return "\n".join(lines) + "\n\nlast lines of the log:\n" + str(tail)
