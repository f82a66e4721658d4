"""The replica's HTTP surface as a raw ASGI callable: ``/healthz``, ``/invoke``, ``/invoke_batch``.

No framework on this path: three routes do not need a router, and a bare ASGI callable costs a few
microseconds per request where a framework's request/response objects cost tens. Bodies are read
with a size limit (checked against ``Content-Length`` first, then while reading) and parsed with
orjson; request data is never unpickled.

Only the gateway on this machine is meant to call a replica. A replica started by the server
listens on a Unix domain socket in a folder only the server's user can enter (``--socket``,
``docs/security.md``): no other user's process, and no browser, can reach it at all. A replica
started with ``--port`` (tests, benchmarks, by hand) listens on TCP ``127.0.0.1``, where any local
process can call it; there a browser on this machine must not be made to: a page elsewhere can send
a "simple" cross-site POST (``text/plain``, no preflight) to ``127.0.0.1:<port>``, or rebind a DNS
name to 127.0.0.1. So every request must name the replica itself in ``Host`` (``127.0.0.1:<port>``,
``localhost:<port>`` or ``[::1]:<port>``; 403 otherwise), must not come from a web page of another
origin (an ``Origin`` header other than those: 403), and ``/invoke`` and ``/invoke_batch`` take
``application/json`` only (415 for any other or a missing ``Content-Type``), which a browser cannot
send cross-site without a preflight the replica never answers. The gateway's client sends exactly
``Host: 127.0.0.1:<port>`` and ``Content-Type: application/json`` (over a Unix socket, ``Host:
localhost``, which is not checked: no web page can address a Unix socket).

The prediction's uuid comes from the gateway in ``X-Modelyard-Prediction-Uuid`` (for
``/invoke_batch`` one base uuid, see ``user_code.batch_item_uuid``); without it the replica mints
one. A value that is not a uuid is refused with 400.

Errors of the request itself (not JSON, too large, unknown route) answer with their HTTP status and
``{"ok": false, "error": {"code", "message"}}``, the ``ModelyardError.to_dict()`` shape. Failures
of user code answer 200 with ``{"ok": false, "error": {"type", "message"}}`` inside the item: the
replica did its job, the prediction failed (see ``docs/design/serving.md``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from modelyard.errors import Forbidden, InvalidInput, ModelyardError, NotFound, PayloadTooLarge
from modelyard.serving.replica.user_code import batch_item_uuid
from modelyard.serving.replica.workers import Workers

__all__ = ["MethodNotAllowed", "ReplicaApp", "UnsupportedMediaType"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


class MethodNotAllowed(InvalidInput):
    status = 405
    code = "method_not_allowed"


class UnsupportedMediaType(InvalidInput):
    status = 415
    code = "unsupported_media_type"


class _Disconnected(Exception):
    """The client went away before sending its whole body: nobody to answer."""


class ReplicaApp:
    """ASGI app serving one user function through ``workers``."""

    def __init__(
        self,
        workers: Workers,
        replica_id: str,
        max_body_bytes: int,
        port: int | None,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        self.workers = workers
        self.on_started = on_started  # once the workers run (the replica sets its memory limit)
        self.replica_id = replica_id
        self.max_body_bytes = max_body_bytes
        self.port = port
        names = ("127.0.0.1", "localhost", "[::1]")
        # None: a Unix socket, which no browser can address; no Host or Origin check needed.
        self._check_host = port is not None
        self._hosts = frozenset(f"{name}:{port}".encode() for name in names)
        self._origins = frozenset(b"http://" + host for host in self._hosts)
        self._health = orjson.dumps({"status": "ok", "replica": replica_id})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.workers.start()
                if self.on_started is not None:
                    self.on_started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.workers.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            content_type, given_uuid = self._check_caller(scope["headers"])
            if path == "/healthz":
                if method not in ("GET", "HEAD"):
                    raise MethodNotAllowed(f"{method} {path}: use GET", allowed="GET")
                await _respond(send, 200, self._health)
            elif path in ("/invoke", "/invoke_batch"):
                if method != "POST":
                    raise MethodNotAllowed(f"{method} {path}: use POST", allowed="POST")
                _check_json(content_type, path)
                body = await self._read_body(scope, receive)
                arrived = time.perf_counter()
                value = _parse(body)
                uid = None if given_uuid is None else _uuid(given_uuid)
                if path == "/invoke":
                    await _respond(send, 200, await self.workers.invoke(value, arrived, uid))
                else:
                    if not isinstance(value, list):
                        raise InvalidInput(
                            f"/invoke_batch takes a JSON list of inputs, got a "
                            f"{type(value).__name__}; send [input, input, ...]"
                        )
                    uuids = (
                        None
                        if uid is None
                        else [batch_item_uuid(uid, i) for i in range(len(value))]
                    )
                    answers = await self.workers.invoke_batch(value, arrived, uuids)
                    await _respond(send, 200, b'{"results":[' + b",".join(answers) + b"]}")
            else:
                raise NotFound(
                    f"no route {path!r}; a replica serves GET /healthz, POST /invoke and "
                    "POST /invoke_batch"
                )
        except ModelyardError as exc:
            await _respond(send, exc.status, orjson.dumps({"ok": False, "error": exc.to_dict()}))
        except _Disconnected:
            return

    def _check_caller(
        self, headers: list[tuple[bytes, bytes]]
    ) -> tuple[bytes | None, bytes | None]:
        """Refuse a request not addressed to this replica by name, or sent by a web page of
        another origin; returns the request's ``Content-Type`` and prediction uuid header (None
        for each it has not)."""
        host: bytes | None = None
        origin: bytes | None = None
        content_type: bytes | None = None
        given_uuid: bytes | None = None
        for name, value in headers:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"content-type":
                content_type = value
            elif name == b"x-modelyard-prediction-uuid":
                given_uuid = value
        if not self._check_host:
            return content_type, given_uuid
        if host not in self._hosts:
            shown = None if host is None else host.decode("latin-1")
            raise Forbidden(
                f"Host {shown!r} is not this replica; it answers only requests for "
                f"127.0.0.1:{self.port} (or localhost:{self.port}), as the gateway sends them",
                host=shown,
            )
        if origin is not None and origin not in self._origins:
            shown = origin.decode("latin-1")
            raise Forbidden(
                f"Origin {shown!r}: a replica takes no calls from web pages; call the model "
                "through the Modelyard server's gateway",
                origin=shown,
            )
        return content_type, given_uuid

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                raise _too_large(int(value), limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_json(content_type: bytes | None, path: str) -> None:
    media = None if content_type is None else content_type.split(b";", 1)[0].strip().lower()
    if media != b"application/json":
        shown = None if content_type is None else content_type.decode("latin-1")
        raise UnsupportedMediaType(
            f"Content-Type {shown!r} is not accepted by {path}; send the input as JSON with "
            "'Content-Type: application/json'",
            content_type=shown,
        )


def _uuid(value: bytes) -> str:
    text = value.decode("latin-1").strip()
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidInput(
            f"X-Modelyard-Prediction-Uuid {text[:80]!r} is not a uuid; send one uuid such as "
            "'0190f0b2-6a2b-7c3d-8e4f-1a2b3c4d5e6f' (or no header: the replica mints one)"
        ) from None


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body of {size} bytes (or more) is over this replica's limit of {limit} bytes; "
        "send a smaller input or start the replica with a larger --max-body-bytes",
        limit_bytes=limit,
    )


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        shown = body[:80].decode("utf-8", "replace")
        raise InvalidInput(
            f"request body {shown!r} is not JSON ({exc}); send the function's input as JSON, "
            'for example {"tenure": 3}'
        ) from exc


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
