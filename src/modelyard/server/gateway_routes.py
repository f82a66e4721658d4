"""The hot path: ``POST /model``, ``POST /api/v1/models/{name}/predict`` and ``.../predict_batch``.

Raw ASGI in front of FastAPI (``ModelCalls``, the outermost of the app's own middleware): no
router, no dependency injection, no validation models, no request or response objects. Each call
is an access-key lookup and an API-key lookup (both cached in memory by the registry), the
caller's project roles (cached by ``web/access.py``: calling a model needs operator in its
project; models with ``auth_required: false`` stay open to anyone), a bounded body read and
``Gateway.invoke``. Measured on this machine (``docs/gateway.md``), the framework's
layers cost more per request than the gateway itself. The event loop here never waits on the
database: a lookup the caches cannot answer runs on a worker thread (``asyncio.to_thread``, not
the pool the control-plane routes fill), and records go to the buffered writer's queue. Answers
use the reference envelope ``{"success": ..., "response" | "error": ..., "ReplicaID"?, "uuid"?}``,
refusals included. The same handlers are also the app's routes (``routes()``), so the routes are
named and documented like the others, and answer even without the middleware.

Body limits: a model's ``max_body_bytes`` (5 MiB by default). A declared ``Content-Length`` over
the limit is refused with 413 before anything is read; without one (chunked) the body is counted
while it streams and refused as soon as it passes the limit, so an oversized body is never held
whole. ``POST /model`` may name the model only inside its body; its limit is then the largest of
the active models' limits plus room for the envelope, and the gateway checks the inner request
against the model's own limit. Bodies are parsed as JSON only (never unpickled). A caller that
goes away before its whole body arrived gets no answer (nobody is there to read it).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.routing import Route

from modelyard.errors import (
    Forbidden,
    InvalidInput,
    ModelyardError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from modelyard.registry import Model, ModelSettings
from modelyard.web.access import Caller, Right, caller_on_loop, not_found
from modelyard.web.errors import json_bytes
from modelyard.web.services import Services

__all__ = ["ENVELOPE_ROOM", "MAX_REQUEST_DEPTH", "ModelCalls", "routes"]

ENVELOPE_ROOM = 64 * 1024  # the {"accessKey": ..., "request": ...} around a model's input
MAX_REQUEST_DEPTH = 254  # levels of nesting orjson encodes (it refuses the 255th)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PREFIX = "/api/v1/models/"
_JSON = (b"content-type", b"application/json")


class _Disconnected(Exception):
    """The caller went away before its whole body arrived."""


class _Call:
    """What a handler reads of one request: its headers (once), body and query."""

    __slots__ = ("authorization", "content_length", "receive", "scope", "services")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.services: Services = scope["app"].state.services
        self.authorization: str | None = None
        self.content_length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"content-length":
                self.content_length = value

    def query(self, key: str) -> str | None:
        raw: bytes = self.scope.get("query_string", b"")
        if not raw:
            return None
        found = None
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if name == key:
                found = value  # the last one, as Starlette's query_params.get
        return found

    async def body(self, limit: int) -> bytes:
        """The whole body if it is at most ``limit`` bytes; PayloadTooLarge as soon as it is not."""
        declared = self.content_length
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                shown = declared[:40].decode("latin-1")
                raise InvalidInput(
                    f"Content-Length={shown!r} is not a number of bytes; send a valid header"
                ) from None
            if size > limit:
                raise _too_large(size, limit)
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise _too_large(received, limit, streamed=True)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: int, limit: int, streamed: bool = False) -> PayloadTooLarge:
    what = f"more than {limit}" if streamed else str(size)
    return PayloadTooLarge(
        f"the request body is {what} bytes; this model accepts at most {limit} bytes "
        "(send less, or raise the model's max_body_bytes)",
        limit=limit,
    )


def _encode_request(value: Any) -> bytes:
    """The ``request`` of a ``/model`` body as the model's input bytes. orjson writes at most
    ``MAX_REQUEST_DEPTH`` levels of nesting (reading the body took up to 1,024)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        raise InvalidInput(
            f'"request" nests deeper than {MAX_REQUEST_DEPTH} levels of lists and objects, the '
            "most POST /model accepts; send a flatter input (or its JSON text as a string)",
            limit=MAX_REQUEST_DEPTH,
        ) from None


async def _respond(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw = [_JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _refuse(send: Send, error: ModelyardError) -> None:
    headers: dict[str, str] = {}
    retry = error.details.get("retry_after_s")
    if isinstance(retry, int) and not isinstance(retry, bool):
        headers["Retry-After"] = str(retry)
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    body = json_bytes({"success": False, "error": error.to_dict()})  # never fails itself
    await _respond(send, error.status, body, headers)


async def _authenticated(call: _Call) -> Caller:
    """The caller behind the Authorization header (caches first); run keys call no model."""
    caller = await caller_on_loop(call.services.registry, call.authorization)
    if caller.is_run_key:
        assert caller.key is not None
        raise Forbidden(
            f"run key {caller.key.id!r} (a deployment's or a job run's own key) may not call "
            "models; call with a user's API key",
            key_id=caller.key.id,
        )
    return caller


async def _caller(call: _Call, model: Model) -> Caller | None:
    """The caller when the model requires a key (None when it accepts anonymous calls), with
    OPERATE on the model's project. Refusals are worded on a worker thread (they may read the
    project's name); the allowed path reads only caches."""
    if not model.settings.auth_required:
        return None
    caller = await _authenticated(call)
    if not caller.may(Right.OPERATE, model.project_crn, model.crn):
        what = f"model {model.name!r}"
        await asyncio.to_thread(
            functools.partial(caller.check, doing="calling"),
            Right.OPERATE,
            model.project_crn,
            what,
            model.crn,
        )
    return caller


async def _model_by_access_key(services: Services, access_key: str) -> Model:
    """The model an access key selects: from the registry's cache, or read on a worker thread
    (the event loop never waits on the database)."""
    model = services.registry.cached_model_by_access_key(access_key)
    if model is None:
        model = await asyncio.to_thread(services.registry.model_by_access_key, access_key)
    return model


async def _model_named(services: Services, name: str) -> Model:
    """The model ``name``: from the server's model cache, or read on a worker thread."""
    model = services.models.peek(name)
    if model is None:
        model = await asyncio.to_thread(services.models.get, name)
    return model


def _envelope_limit(services: Services) -> int:
    gateway = services.gateway
    limits = []
    for name in gateway.models():
        pool = gateway.pool(name)
        if pool is not None:
            limits.append(pool.settings.max_body_bytes)
    return max(limits, default=ModelSettings().max_body_bytes) + ENVELOPE_ROOM


async def _model_and_input(call: _Call) -> tuple[Model, bytes]:
    """``POST /model``: the model its access key selects (the caller checked) and its input."""
    services = call.services
    query_key = call.query("accessKey")
    model = await _model_by_access_key(services, query_key) if query_key else None
    if model is not None:
        await _caller(call, model)  # refuse before reading the body
    limit = (
        model.settings.max_body_bytes + ENVELOPE_ROOM
        if model is not None
        else _envelope_limit(services)
    )
    raw = await call.body(limit)
    try:
        document: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f'the body is not JSON ({exc}); send {{"accessKey": ..., "request": {{...}}}}'
        ) from None
    if not isinstance(document, dict) or "request" not in document:
        raise InvalidInput(
            'the body must be a JSON object {"accessKey": "<model access key>", "request": '
            f"<the function's input>}}, got {raw[:80]!r}"
        )
    body_key = document.get("accessKey")
    if body_key is not None and not isinstance(body_key, str):
        raise InvalidInput(f"accessKey={body_key!r} is not a string; send the model's key")
    if model is None or (body_key and body_key != query_key):
        if not body_key:
            raise Unauthorized(
                'no access key: send it as "accessKey" in the body or ?accessKey= (it '
                "selects the model; 'modelyard models show NAME' tells its prefix)"
            )
        model = await _model_by_access_key(services, body_key)
        await _caller(call, model)
    return model, _encode_request(document["request"])


async def model_call(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /model`` with ``{"accessKey": ..., "request": <input>}`` (or ``?accessKey=``)."""
    call = _Call(scope, receive)
    try:
        model, inner = await _model_and_input(call)
    except ModelyardError as error:
        await _refuse(send, error)
        return
    except _Disconnected:
        return
    result = await call.services.gateway.invoke(model.name, inner)
    await _respond(send, result.http_status, result.body(), result.headers())


async def _native(scope: Scope, receive: Receive, send: Send, name: str, batch: bool) -> None:
    call = _Call(scope, receive)
    services = call.services
    try:
        try:
            model = await _model_named(services, name)
        except NotFound:
            # Authenticate first, so a caller without a key cannot probe for model names; then
            # the answer a model of another project gets (no names listed).
            await _authenticated(call)
            raise not_found("model", name) from None
        await _caller(call, model)
        raw = await call.body(model.settings.max_body_bytes)
    except ModelyardError as error:
        await _refuse(send, error)
        return
    except _Disconnected:
        return
    gateway = services.gateway
    result = await (gateway.invoke_batch(name, raw) if batch else gateway.invoke(name, raw))
    await _respond(send, result.http_status, result.body(), result.headers())


async def predict(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /api/v1/models/{name}/predict``: the body is the function's input."""
    await _native(scope, receive, send, scope["path_params"]["name"], batch=False)


async def predict_batch(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /api/v1/models/{name}/predict_batch``: the body is a JSON list of inputs."""
    await _native(scope, receive, send, scope["path_params"]["name"], batch=True)


class ModelCalls:
    """ASGI middleware answering the model calls itself, before the framework's layers; every
    other request (other paths, other methods) goes on to ``app``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path == "/model":
                await model_call(scope, receive, send)
                return
            if path.startswith(_PREFIX):
                name, slash, action = path[len(_PREFIX) :].partition("/")
                if name and slash and action in ("predict", "predict_batch"):
                    await _native(scope, receive, send, name, batch=action == "predict_batch")
                    return
        await self.app(scope, receive, send)


class _Endpoint:
    """A handler as a route's ASGI app (a plain function would be taken for a request handler)."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.handler = handler
        self.__doc__ = handler.__doc__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


def routes() -> list[Route]:
    """The same handlers as routes: named, documented, and served without ``ModelCalls``."""
    return [
        Route("/model", _Endpoint(model_call), methods=["POST"], name="model_call"),
        Route(
            "/api/v1/models/{name}/predict", _Endpoint(predict), methods=["POST"], name="predict"
        ),
        Route(
            "/api/v1/models/{name}/predict_batch",
            _Endpoint(predict_batch),
            methods=["POST"],
            name="predict_batch",
        ),
    ]
