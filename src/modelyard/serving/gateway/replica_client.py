"""A minimal HTTP/1.1 client for the gateway -> replica hop, on asyncio streams.

Why hand-rolled: the hop is loopback-only, speaks to one known server (the replica's ASGI app),
and sits on the predict path whose whole overhead budget is 1 ms at p50. Measured on this machine
(docs/gateway.md, ``benchmarks/gateway_client.py``) this client costs a fraction of httpx's and
aiohttp's time per request; the difference is large enough to own ~250 lines.

What it does and does not do:

- a replica at ``unix:/path/to/replica.sock`` (what the server runs: a Unix domain socket in a
  folder only the server's user can enter) or at ``http://127.0.0.1:PORT`` (TCP: tests,
  benchmarks); the Unix socket is also the faster of the two (docs/gateway.md);
- persistent keep-alive connections per replica, reused LIFO (the warmest first);
- a connection idle longer than ``idle_timeout_s`` (default 2 s, below uvicorn's 5 s keep-alive)
  is closed instead of reused, and an idle connection the kernel says is readable (the replica's
  FIN or RST arrived, perhaps before the event loop noticed) is dropped too: so we do not write a
  request into a connection the server is closing or that died. That race is the one case where a
  request could be lost after being written (the pool would then resend it, see below);
- ``Content-Length`` and ``chunked`` response bodies; no redirects, no TLS, no proxies, no
  compression, no request streaming: none of these exist on a loopback hop to a replica.

Errors: ``ConnectFailed`` when the connection could not be opened (nothing was sent, so the
caller may try another replica); ``NoResponse`` (an ``ExchangeFailed``) when the connection broke
or closed after the request was written but before ANY byte of the answer arrived (the replica
died or closed it: the pool may resend the request, as the model allows); ``ExchangeFailed``
otherwise when the connection broke or the answer was not HTTP (part of an answer had come: never
resent).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
from urllib.parse import urlsplit

from modelyard.errors import InvalidInput

__all__ = ["ConnectFailed", "ExchangeFailed", "NoResponse", "ReplicaClient"]

_MAX_HEAD = 64 * 1024
_STREAM_LIMIT = 1024 * 1024


class ConnectFailed(Exception):
    """The connection could not be opened; the request was not sent."""


class ExchangeFailed(Exception):
    """The request was (possibly) sent but no complete HTTP answer came back."""


class NoResponse(ExchangeFailed):
    """The connection broke or closed before any byte of the answer arrived."""


class _Conn:
    __slots__ = ("fd", "idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        sock = writer.get_extra_info("socket")
        self.fd: int = sock.fileno() if sock is not None else -1

    def usable(self, now: float, idle_timeout_s: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.transport.is_closing()
            and now - self.idle_since < idle_timeout_s
            and not _readable(self.fd)
        )

    def close(self) -> None:
        self.writer.close()


def _readable(fd: int) -> bool:
    """Whether an idle connection has something to read: the peer's FIN or RST (or stray bytes).

    The event loop may not have seen a replica's death yet (it was killed a moment ago), so
    ``at_eof()`` alone would let us write a request into a dead connection and get a 502 for a
    request that never arrived. One ``poll`` with a zero timeout (about a microsecond, the check
    urllib3 makes too) asks the kernel directly; a readable idle connection is never reused.
    """
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class ReplicaClient:
    """Keep-alive HTTP/1.1 to one replica at ``url``: ``unix:/path.sock`` or
    ``http://127.0.0.1:PORT``."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 2.0,
        idle_timeout_s: float = 2.0,
        max_idle: int = 64,
    ) -> None:
        self.url = url
        self.socket_path: str | None = None
        if url.startswith("unix:/"):
            self.socket_path = url[len("unix:") :]
            self.host, self.port = "localhost", 0
            self._host_header = b"Host: localhost\r\n"
        else:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname or parts.port is None:
                raise InvalidInput(
                    f"replica url {url!r} is not supported; expected 'unix:/ABSOLUTE/PATH' (a "
                    "Unix socket) or 'http://HOST:PORT' (plain HTTP with an explicit port, e.g. "
                    "'http://127.0.0.1:8101')"
                )
            self.host = parts.hostname
            self.port = parts.port
            self._host_header = f"Host: {self.host}:{self.port}\r\n".encode()
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_idle = max_idle
        self._idle: list[_Conn] = []
        self._closed = False

    async def post(self, path: str, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``path``; the status and body of the answer.

        ``headers``: extra header lines, each ending in CRLF (``b"X-A: 1\\r\\n"``)."""
        head = b"".join(
            (
                b"POST ",
                path.encode(),
                b" HTTP/1.1\r\n",
                self._host_header,
                headers,
                b"Content-Type: application/json\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
            )
        )
        return await self._exchange(head, body)

    async def get(self, path: str) -> tuple[int, bytes]:
        head = b"GET " + path.encode() + b" HTTP/1.1\r\n" + self._host_header + b"\r\n"
        return await self._exchange(head, b"")

    async def close(self) -> None:
        """Close idle connections; connections in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:  # let the transports finish closing while the loop still runs
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    # -- internals ------------------------------------------------------------------------------
    async def _connection(self) -> _Conn:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(now, self.idle_timeout_s):
                return conn
            conn.close()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.socket_path is not None:
                    reader, writer = await asyncio.open_unix_connection(
                        self.socket_path, limit=_STREAM_LIMIT
                    )
                else:
                    reader, writer = await asyncio.open_connection(
                        self.host, self.port, limit=_STREAM_LIMIT
                    )
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(
                f"cannot connect to {self.url} ({exc.__class__.__name__}: {exc})"
            ) from exc
        return _Conn(reader, writer)

    async def _exchange(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        conn = await self._connection()
        try:
            writer = conn.writer
            try:
                if len(body) < 65536:
                    writer.write(head + body)
                else:
                    writer.write(head)
                    writer.write(body)
                    await writer.drain()
            except OSError as exc:
                if getattr(conn.reader, "_buffer", b"x"):
                    raise
                raise NoResponse(
                    f"the connection to {self.url} broke while sending the request "
                    f"({exc.__class__.__name__}: {exc})"
                ) from exc
            status, payload, keep = await self._read_response(conn.reader)
        except BaseException as exc:
            # Timeouts and cancellation land here too: a half-read answer poisons the connection.
            conn.close()
            if isinstance(exc, ExchangeFailed):
                raise
            if isinstance(
                exc, (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)
            ):
                raise ExchangeFailed(
                    f"the connection to {self.url} broke before a complete answer "
                    f"({exc.__class__.__name__}: {exc})"
                ) from exc
            raise
        if keep and not self._closed and len(self._idle) < self.max_idle:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return status, payload

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        """The response head; ``NoResponse`` when the connection ends before its first byte."""
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            raise NoResponse(
                f"{self.url} closed the connection before answering (no byte of an answer)"
            ) from exc
        except OSError as exc:
            # Bytes that came before a reset stay in the reader's buffer: any there means the
            # answer had started. (``_buffer`` is asyncio's; without it, assume it had.)
            if getattr(reader, "_buffer", b"x"):
                raise
            raise NoResponse(
                f"the connection to {self.url} broke before any byte of an answer "
                f"({exc.__class__.__name__}: {exc})"
            ) from exc

    async def _read_response(self, reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        raw = await self._read_head(reader)
        if len(raw) > _MAX_HEAD:
            raise ExchangeFailed(f"{self.url} sent a response head over {_MAX_HEAD} bytes")
        lines = raw[:-4].split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise ExchangeFailed(f"{self.url} answered {lines[0][:80]!r}, not HTTP/1.x")
        try:
            status = int(status_line[1])
        except ValueError:
            raise ExchangeFailed(
                f"{self.url} answered a bad status line {lines[0][:80]!r}"
            ) from None
        keep = status_line[0] == b"HTTP/1.1"
        length = -1
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                token = value.strip().lower()
                if token == b"close":
                    keep = False
                elif token == b"keep-alive":
                    keep = True
        if chunked:
            return status, await self._read_chunked(reader), keep
        if length >= 0:
            return status, await reader.readexactly(length), keep
        # No length: the body runs to the end of the connection.
        return status, await reader.read(), False

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # Trailers (rare) end with an empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
