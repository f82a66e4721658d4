"""Timeouts and a cap for the server's client connections (its HTTP protocol on uvicorn).

uvicorn closes a connection that stays idle after an answer (``timeout_keep_alive``), but it has
no deadline before the first answer: a socket that sends nothing, half a header section, or half
a body stays open for as long as the client likes, unauthenticated, and nothing caps how many.
``guarded_protocol(limits)`` returns uvicorn's httptools protocol with three more rules:

- the header section of a request must arrive within ``header_timeout_s`` of the connection
  opening (or of the request's first byte, on a kept-alive connection); else ``408`` and close;
- while a request body is being read, each part must follow the previous one within
  ``body_timeout_s``; else the connection is closed (the route sees a disconnect). The clock
  does not run while the server itself has paused reading (a route that reads slowly);
- at most ``max_connections`` connections are open at once; one more is answered ``503`` and
  closed at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelyard import settings

__all__ = ["ConnectionLimits", "guarded_protocol"]

log = logging.getLogger("modelyard.server")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000
    keep_alive_s: int = 5  # uvicorn's own: idle time allowed after an answer

    @classmethod
    def from_settings(cls) -> ConnectionLimits:
        """MODELYARD_HTTP_HEADER_TIMEOUT, _BODY_TIMEOUT and _MAX_CONNECTIONS (or defaults)."""
        return cls(
            header_timeout_s=settings.get("http_header_timeout") / 1000,
            body_timeout_s=settings.get("http_body_timeout") / 1000,
            max_connections=settings.get("http_max_connections"),
        )


def _close_with(transport: asyncio.Transport, status: bytes, message: str) -> None:
    body = message.encode()
    transport.write(
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )
    transport.close()


# shape: one subclass of uvicorn's protocol, its overrides read together in one place
def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:  # noqa: C901
    """uvicorn's httptools protocol with ``limits`` enforced (pass it as ``http=``)."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._guard: asyncio.TimerHandle | None = None

        def _arm(self, delay: float, handler: Any) -> None:
            self._disarm()
            self._guard = self.loop.call_later(delay, handler)

        def _disarm(self) -> None:
            if self._guard is not None:
                self._guard.cancel()
                self._guard = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                log.warning(
                    "refused a connection: %d open, MODELYARD_HTTP_MAX_CONNECTIONS=%d",
                    len(self.connections),
                    limits.max_connections,
                )
                _close_with(
                    transport,
                    b"503 Service Unavailable",
                    f"too many open connections (MODELYARD_HTTP_MAX_CONNECTIONS="
                    f"{limits.max_connections}); retry later\n",
                )
                return
            self._arm(limits.header_timeout_s, self._headers_too_slow)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._guard is None:  # a later request on a kept-alive connection
                self._arm(limits.header_timeout_s, self._headers_too_slow)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            self._arm(limits.body_timeout_s, self._body_too_slow)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._arm(limits.body_timeout_s, self._body_too_slow)

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _headers_too_slow(self) -> None:
            self._guard = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:
                _close_with(
                    self.transport,
                    b"408 Request Timeout",
                    f"the request's headers did not arrive within {limits.header_timeout_s:g} s "
                    "(MODELYARD_HTTP_HEADER_TIMEOUT)\n",
                )
            else:  # an answer is being written: only closing is safe
                self.transport.close()

        def _body_too_slow(self) -> None:
            self._guard = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            waiting_on_us = self.flow.read_paused or (
                cycle is not None and cycle.waiting_for_100_continue
            )
            if waiting_on_us:  # the route has not asked for more yet: not the client's fault
                self._arm(limits.body_timeout_s, self._body_too_slow)
                return
            log.info("closed a connection: no request body for %g s", limits.body_timeout_s)
            self.transport.close()

    return GuardedHttpToolsProtocol
