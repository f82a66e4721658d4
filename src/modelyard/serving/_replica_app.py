"""The replica's HTTP surface as a raw ASGI callable: ``/healthz``, ``/invoke``, ``/invoke_batch``.

No framework on this path: three routes do not need a router, and a bare ASGI callable costs a few
microseconds per request where a framework's request/response objects cost tens. Bodies are read
with a size limit (checked against ``Content-Length`` first, then while reading) and parsed with
orjson; request data is never unpickled.

Errors of the request itself (not JSON, too large, unknown route) answer with their HTTP status and
``{"ok": false, "error": {"code", "message"}}``, the ``ModelyardError.to_dict()`` shape. Failures
of user code answer 200 with ``{"ok": false, "error": {"type", "message"}}`` inside the item: the
replica did its job, the prediction failed (see ``docs/design/serving.md``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from modelyard.errors import InvalidInput, ModelyardError, NotFound, PayloadTooLarge
from modelyard.serving._workers import Workers

__all__ = ["MethodNotAllowed", "ReplicaApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


class MethodNotAllowed(InvalidInput):
    status = 405
    code = "method_not_allowed"


class _Disconnected(Exception):
    """The client went away before sending its whole body: nobody to answer."""


class ReplicaApp:
    """ASGI app serving one user function through ``workers``."""

    def __init__(self, workers: Workers, replica_id: str, max_body_bytes: int) -> None:
        self.workers = workers
        self.replica_id = replica_id
        self.max_body_bytes = max_body_bytes
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
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.workers.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path == "/healthz":
                if method not in ("GET", "HEAD"):
                    raise MethodNotAllowed(f"{method} {path}: use GET", allowed="GET")
                await _respond(send, 200, self._health)
            elif path in ("/invoke", "/invoke_batch"):
                if method != "POST":
                    raise MethodNotAllowed(f"{method} {path}: use POST", allowed="POST")
                body = await self._read_body(scope, receive)
                arrived = time.perf_counter()
                value = _parse(body)
                if path == "/invoke":
                    await _respond(send, 200, await self.workers.invoke(value, arrived))
                else:
                    if not isinstance(value, list):
                        raise InvalidInput(
                            f"/invoke_batch takes a JSON list of inputs, got a "
                            f"{type(value).__name__}; send [input, input, ...]"
                        )
                    answers = await self.workers.invoke_batch(value, arrived)
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
