"""The hot path: ``POST /model``, ``POST /api/v1/models/{name}/predict`` and ``.../predict_batch``.

Raw Starlette routes in front of FastAPI (no dependency injection, no validation models, no
middleware): each call is an access-key lookup and an API-key lookup (both cached in memory by the
registry), a bounded body read and ``Gateway.invoke``. The event loop here never waits on the
database: a lookup the caches cannot answer runs on a worker thread (``asyncio.to_thread``, not the
pool the control-plane routes fill), and records go to the buffered writer's queue. Answers use the
reference envelope ``{"success": ..., "response" | "error": ..., "ReplicaID"?, "uuid"?}``, refusals
included.

Body limits: a model's ``max_body_bytes`` (5 MiB by default). A declared ``Content-Length`` over
the limit is refused with 413 before anything is read; without one (chunked) the body is counted
while it streams and refused as soon as it passes the limit, so an oversized body is never held
whole. ``POST /model`` may name the model only inside its body; its limit is then the largest of
the active models' limits plus room for the envelope, and the gateway checks the inner request
against the model's own limit. Bodies are parsed as JSON only (never unpickled).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import InvalidInput, ModelyardError, NotFound, PayloadTooLarge, Unauthorized
from modelyard.registry import ApiKey, Model, ModelSettings
from modelyard.web.auth import Capability, authenticate_on_loop, check_scope
from modelyard.web.errors import json_bytes
from modelyard.web.services import Services, services_of

__all__ = ["ENVELOPE_ROOM", "MAX_REQUEST_DEPTH", "read_body", "routes"]

ENVELOPE_ROOM = 64 * 1024  # the {"accessKey": ..., "request": ...} around a model's input
MAX_REQUEST_DEPTH = 254  # levels of nesting orjson encodes (it refuses the 255th)
_JSON = "application/json"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body if it is at most ``limit`` bytes; PayloadTooLarge as soon as it is not."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidInput(
                f"Content-Length={declared!r} is not a number of bytes; send a valid header"
            ) from None
        if size > limit:
            raise _too_large(size, limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(received, limit, streamed=True)
        chunks.append(chunk)
    return b"".join(chunks)


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


def _refusal(error: ModelyardError) -> Response:
    headers: dict[str, str] = {}
    retry = error.details.get("retry_after_s")
    if isinstance(retry, int) and not isinstance(retry, bool):
        headers["Retry-After"] = str(retry)
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    body = json_bytes({"success": False, "error": error.to_dict()})  # never fails itself
    return Response(body, status_code=error.status, media_type=_JSON, headers=headers)


async def _caller(services: Services, request: Request, model: Model) -> ApiKey | None:
    """The calling API key when the model requires one (None when it accepts anonymous calls)."""
    if not model.settings.auth_required:
        return None
    authorization = request.headers.get("authorization")
    key = await authenticate_on_loop(services.registry, authorization, Capability.CALL)
    check_scope(key, model.crn)
    return key


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


async def model_call(request: Request) -> Response:
    """``POST /model`` with ``{"accessKey": ..., "request": <input>}`` (or ``?accessKey=``)."""
    services = services_of(request)
    try:
        query_key = request.query_params.get("accessKey")
        model = await _model_by_access_key(services, query_key) if query_key else None
        if model is not None:
            await _caller(services, request, model)  # refuse before reading the body
        limit = (
            model.settings.max_body_bytes + ENVELOPE_ROOM
            if model is not None
            else _envelope_limit(services)
        )
        raw = await read_body(request, limit)
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
            await _caller(services, request, model)
        inner = _encode_request(document["request"])
    except ModelyardError as error:
        return _refusal(error)
    result = await services.gateway.invoke(model.name, inner)
    return Response(
        result.body(), status_code=result.http_status, media_type=_JSON, headers=result.headers()
    )


async def _native(request: Request, batch: bool) -> Response:
    services = services_of(request)
    name = request.path_params["name"]
    try:
        try:
            model = await _model_named(services, name)
        except NotFound:
            # Authenticate first, so a caller without a key cannot probe for model names; a key
            # limited to one model gets the 403 it gets for another model (no names listed).
            authorization = request.headers.get("authorization")
            key = await authenticate_on_loop(services.registry, authorization, Capability.CALL)
            check_scope(key, "", f"model {name!r}")
            raise
        await _caller(services, request, model)
        raw = await read_body(request, model.settings.max_body_bytes)
    except ModelyardError as error:
        return _refusal(error)
    gateway = services.gateway
    result = await (gateway.invoke_batch(name, raw) if batch else gateway.invoke(name, raw))
    return Response(
        result.body(), status_code=result.http_status, media_type=_JSON, headers=result.headers()
    )


async def predict(request: Request) -> Response:
    """``POST /api/v1/models/{name}/predict``: the body is the function's input."""
    return await _native(request, batch=False)


async def predict_batch(request: Request) -> Response:
    """``POST /api/v1/models/{name}/predict_batch``: the body is a JSON list of inputs."""
    return await _native(request, batch=True)


def routes() -> list[Route]:
    return [
        Route("/model", model_call, methods=["POST"], name="model_call"),
        Route("/api/v1/models/{name}/predict", predict, methods=["POST"], name="predict"),
        Route(
            "/api/v1/models/{name}/predict_batch",
            predict_batch,
            methods=["POST"],
            name="predict_batch",
        ),
    ]
