"""The model-call routes in the OpenAPI document, without FastAPI on their path.

``POST /model``, ``POST /api/v1/models/{name}/predict`` and ``.../predict_batch`` are raw
Starlette routes (``modelyard.server.gateway_routes``): no validation models, no dependency
injection, so FastAPI does not see them when it writes ``/openapi.json``. ``install(app)`` wraps
the app's ``openapi()`` so the generated document gains hand-written path items for them, with
the reference envelope's request and answer schemas. Only the description changes; the routes
themselves stay as lean as before.

It also completes FastAPI's own operations (the control plane): each declares the bearer
``security`` it needs and the error answers it can give (``CONTROL_ANSWERS``), all in the one
error shape (``ApiError``), so a client or a fuzzer knows what to expect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

__all__ = ["CONTROL_ANSWERS", "PREDICT_PATHS", "SCHEMAS", "install"]

_REF = "#/components/schemas/"

SCHEMAS: dict[str, dict[str, Any]] = {
    "ModelCallRequest": {
        "title": "ModelCallRequest",
        "type": "object",
        "description": "The reference call: the model's access key and the function's input.",
        "properties": {
            "accessKey": {
                "type": "string",
                "description": "The model's access key (or send it as ?accessKey=)",
            },
            "request": {"description": "The input passed to the model's function (any JSON)"},
        },
        "required": ["request"],
    },
    "ModelError": {
        "title": "ModelError",
        "type": "object",
        "description": "Why a call failed: a refusal (the API's one error shape) or the user "
        "function's exception (code model_error, with its type).",
        "properties": {
            "code": {"type": "string", "examples": ["model_error", "unauthorized"]},
            "message": {"type": "string"},
            "type": {"type": "string", "description": "the exception's class (model_error)"},
            "traceback": {"type": "string", "description": "only for models deployed --debug"},
            "details": {"type": "object"},
        },
        "required": ["code", "message"],
    },
    "ModelEnvelope": {
        "title": "ModelEnvelope",
        "type": "object",
        "description": "The reference envelope every model call answers with, refusals included.",
        "properties": {
            "success": {"type": "boolean"},
            "response": {
                "description": "The function's output (with @model_metrics: "
                '{"prediction": ..., "uuid": ...})'
            },
            "error": {"$ref": _REF + "ModelError"},
            "uuid": {"type": "string", "description": "The prediction's uuid (its record's id)"},
            "ReplicaID": {"type": "string", "description": "Which replica answered"},
        },
        "required": ["success"],
    },
    "ModelBatchItem": {
        "title": "ModelBatchItem",
        "type": "object",
        "properties": {
            "success": {"type": "boolean"},
            "response": {"description": "This input's output"},
            "error": {"$ref": _REF + "ModelError"},
            "uuid": {"type": "string"},
        },
        "required": ["success"],
    },
    "ModelBatchEnvelope": {
        "title": "ModelBatchEnvelope",
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "description": "True when every item succeeded"},
            "responses": {"type": "array", "items": {"$ref": _REF + "ModelBatchItem"}},
            "error": {"$ref": _REF + "ModelError"},
            "ReplicaID": {"type": "string"},
        },
        "required": ["success"],
    },
}

SCHEMAS["ApiError"] = {
    "title": "ApiError",
    "type": "object",
    "description": "The one error shape of the control-plane routes (the model calls carry the "
    "same inner object in their envelope).",
    "properties": {"error": {"$ref": _REF + "ModelError"}},
    "required": ["error"],
}

# What a control-plane route can answer besides success, in the shape above (``_control``
# decides which apply to an operation). 422 replaces FastAPI's own HTTPValidationError: the
# server answers validation errors in the one shape too (``errors.py``).
CONTROL_ANSWERS: dict[str, str] = {
    "400": "A value is not accepted (code invalid_input); the message names it and what would be",
    "401": "No API key, or an unknown, revoked or expired one (code unauthorized)",
    "403": "The key's role or scope does not allow this (code forbidden)",
    "404": "What the path or the query names does not exist (code not_found)",
    "409": "The change conflicts with the current state (code conflict)",
    "413": "The body is over the route's cap or a record over MODELYARD_MAX_RECORD_BYTES "
    "(code payload_too_large)",
    "422": "The body or a parameter does not match this schema (code invalid_input; "
    "details.errors lists each field)",
    "429": "Too many followed logs for this key or in all (code overloaded; see Retry-After)",
    "503": "The database or the part the route needs is unavailable (code store_unavailable or "
    "unavailable)",
}

_SECURITY: list[dict[str, list[str]]] = [
    {"bearer": []},
    {},
]  # {}: a model deployed with auth_required=false takes no key
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The model's name",
}
_STATUSES = {
    "400": "The body is not JSON, or not the expected shape",
    "401": "No or unknown API key or access key",
    "403": "The key's role or scope does not allow calling this model",
    "404": "No such model",
    "413": "The body is over the model's max_body_bytes (5 MiB by default)",
    "429": "Every replica busy and the queue full (see Retry-After)",
    "500": "The model's function raised (error.code model_error)",
    "502": "A replica broke off the exchange",
    "503": "No active deployment",
    "504": "The request timeout passed",
}


def _answers(ok_schema: str) -> dict[str, Any]:
    def body(schema: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": _REF + schema}}}

    answers: dict[str, Any] = {"200": {"description": "Answered", "content": body(ok_schema)}}
    for status, text in _STATUSES.items():
        answers[status] = {"description": text, "content": body(ok_schema)}
    return answers


def _operation(
    operation_id: str,
    summary: str,
    description: str,
    request_schema: dict[str, Any],
    ok_schema: str,
    parameters: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "tags": ["model calls"],
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request_schema}},
        },
        "responses": _answers(ok_schema),
        "security": _SECURITY,
    }


PREDICT_PATHS: dict[str, dict[str, Any]] = {
    "/model": {
        "post": _operation(
            "model_call",
            "Call a model (the reference call)",
            "The body names the model by its access key; the answer is the reference envelope.",
            {"$ref": _REF + "ModelCallRequest"},
            "ModelEnvelope",
            [
                {
                    "name": "accessKey",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "The model's access key, instead of the body's accessKey",
                }
            ],
        )
    },
    "/api/v1/models/{name}/predict": {
        "post": _operation(
            "predict",
            "Call a model by name",
            "The body is the function's input as is; the answer is the reference envelope.",
            {"description": "The function's input (any JSON)"},
            "ModelEnvelope",
            [_NAME],
        )
    },
    "/api/v1/models/{name}/predict_batch": {
        "post": _operation(
            "predict_batch",
            "Call a model with a list of inputs",
            "Each input gets its own uuid and record; one answer per input, in order.",
            {"type": "array", "items": {"description": "One input of the function"}},
            "ModelBatchEnvelope",
            [_NAME],
        )
    },
}


def _control(path: str, method: str, operation: dict[str, Any]) -> None:
    """Give a FastAPI operation its ``security`` (every control-plane route needs a key) and
    the error answers it can give, each in the one error shape."""
    operation["security"] = [{"bearer": []}]
    statuses = ["400", "401", "403", "404", "422", "503"]
    if method != "get":
        statuses.append("409")
    if "requestBody" in operation:
        statuses.append("413")
    if path.endswith("/logs"):  # ?follow=true streams are bounded
        statuses.append("429")
    error = {"application/json": {"schema": {"$ref": _REF + "ApiError"}}}
    responses = operation.setdefault("responses", {})
    for status in sorted(statuses):
        responses[status] = {"description": CONTROL_ANSWERS[status], "content": error}


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json``) include the model-call routes."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()  # FastAPI's own document of the control-plane routes
        for path, item in document.get("paths", {}).items():
            for method, operation in item.items():
                _control(path, method, operation)
        document["paths"] = {**PREDICT_PATHS, **document.get("paths", {})}
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):  # replaced by ApiError
            schemas.pop(unused, None)
        schemas.update(SCHEMAS)
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: Authorization: Bearer <key>",
        }
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
