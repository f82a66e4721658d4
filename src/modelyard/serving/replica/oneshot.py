"""Each answer leaves the replica in one write: its head and its body together.

Why: the gateway resends a request whose replica died before ANY byte of the answer arrived, and
never one whose answer had started (``docs/gateway.md``, rule 5). uvicorn writes an answer's head
(on ``http.response.start``) and its body (on ``http.response.body``) with two ``write`` calls;
between them the event loop's thread may wait for the GIL behind the user-code threads for
milliseconds (the interpreter switches threads every 5 ms). A replica SIGKILLed in that gap left
the gateway a head without a body: an answer that had started, so a 502 even for a resendable
model (seen 2 times in 9 runs of ``tests/reliability/test_replica_kill.py`` before this module).

``OneWriteTransport`` wraps each connection's transport: a write that starts a response (the
status line, ``HTTP/1.1 ``) is held and goes out together with the next write, the body, in one
system call; a head that no body follows in the same loop turn (HEAD, 204, ``100 Continue``) goes
out on the next turn. Everything else passes straight through. So an answer is either entirely in
the gateway's socket or not at all (up to the socket buffer's size, far above a prediction's
answer), and one system call per answer is saved as well.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["OneWriteTransport", "one_write_protocol"]

_STATUS_LINE = b"HTTP/1.1 "


class OneWriteTransport:
    """A transport proxy that joins a response head to the body written after it."""

    __slots__ = ("_handle", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._handle: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._transport.write(held + bytes(data))
        elif isinstance(data, bytes) and data.startswith(_STATUS_LINE):
            self._held = bytes(data)
            self._handle = self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        self._handle = None
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def one_write_protocol() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, its connections' transports wrapped in ``OneWriteTransport``
    (pass it as ``uvicorn.Config(http=...)``)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class OneWriteHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            wrapped: Any = OneWriteTransport(transport, self.loop)
            super().connection_made(wrapped)

    return OneWriteHttpToolsProtocol
