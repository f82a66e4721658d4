"""The model-call routes on raw ASGI (``server.gateway_routes.ModelCalls``): the same answers as
the routes behind the framework, body limits, the query's access key, a caller that leaves.

An in-process server (``with_api``) with a registered model and no deployment: each accepted call
reaches the gateway, which answers 503 "no active deployment", so what is checked here is the
route's own work up to that point. Calls with a deployed model run in tests/server/test_auth.py,
test_models_api.py and the end-to-end tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from modelyard.server.gateway_routes import ModelCalls

from .conftest import Api


async def _asgi(app: Any, method: str, path: str, body: bytes, **extra: Any) -> list[Any]:
    """One request straight into ``app`` (no HTTP client): the messages it sent back."""
    headers = [(b"content-type", b"application/json"), *extra.pop("headers", [])]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": extra.pop("query", b""),
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "app": extra.pop("outer_app"),
    }
    messages = iter(extra.pop("messages", [{"type": "http.request", "body": body}]))
    sent: list[Any] = []

    async def receive() -> Any:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _answer(sent: list[Any]) -> tuple[int, dict[bytes, bytes], Any]:
    start, body = sent
    return start["status"], dict(start["headers"]), orjson.loads(body["body"])


def test_model_calls_answer_as_the_routes_do(with_api: Callable[..., Any]) -> None:
    async def scenario(api: Api) -> None:
        _, access = api.services.registry.create_model("churn")
        auth = [(b"authorization", f"Bearer {api.admin}".encode())]
        raw = b'{"x": 1}'
        envelope = orjson.dumps({"accessKey": access, "request": {"x": 1}})
        calls = [
            ("/api/v1/models/churn/predict", raw, b""),
            ("/api/v1/models/churn/predict_batch", b"[" + raw + b"]", b""),
            ("/model", envelope, b""),
            ("/model", b'{"request": {"x": 1}}', b"accessKey=wrong&accessKey=" + access.encode()),
        ]
        fast = ModelCalls(api.app.router)
        for path, body, query in calls:
            answers = [
                _answer(
                    await _asgi(
                        app, "POST", path, body, headers=auth, query=query, outer_app=api.app
                    )
                )
                for app in (fast, api.app.router)  # raw ASGI, and the same handler as a route
            ]
            assert answers[0] == answers[1], path
            status, headers, document = answers[0]
            assert status == 503, document  # accepted: the gateway has no deployment of churn
            assert headers[b"content-type"] == b"application/json"
            assert document["success"] is False
            assert "no active deployment" in document["error"]["message"]

    with_api(scenario, jobs=False)


def test_refusals_keep_the_envelope_and_the_limits(with_api: Callable[..., Any]) -> None:
    async def scenario(api: Api) -> None:
        api.services.registry.create_model("churn")
        app = ModelCalls(api.app.router)
        path = "/api/v1/models/churn/predict"
        limit = 5 * 1024 * 1024
        auth = [(b"authorization", f"Bearer {api.admin}".encode())]

        status, headers, document = _answer(
            await _asgi(app, "POST", path, b"{}", outer_app=api.app)
        )
        assert status == 401 and headers[b"www-authenticate"] == b"Bearer"
        assert document["success"] is False and document["error"]["code"] == "unauthorized"

        declared = [*auth, (b"content-length", str(limit + 1).encode())]
        sent = await _asgi(app, "POST", path, b"", headers=declared, outer_app=api.app)
        status, _, document = _answer(sent)
        assert status == 413 and f"at most {limit} bytes" in document["error"]["message"]

        chunk = b" " * (1024 * 1024)  # chunked, no Content-Length: refused while it streams
        stream = [{"type": "http.request", "body": chunk, "more_body": True}] * 6
        sent = await _asgi(app, "POST", path, b"", headers=auth, messages=stream, outer_app=api.app)
        status, _, document = _answer(sent)
        assert status == 413 and f"more than {limit}" in document["error"]["message"]

        bad = [*auth, (b"content-length", b"12abc")]
        status, _, document = _answer(
            await _asgi(app, "POST", path, b"", headers=bad, outer_app=api.app)
        )
        assert status == 400 and "'12abc'" in document["error"]["message"]

    with_api(scenario, jobs=False)


def test_a_caller_that_leaves_mid_body_gets_no_answer_and_no_error(
    with_api: Callable[..., Any],
) -> None:
    async def scenario(api: Api) -> None:
        api.services.registry.create_model("churn")
        auth = [(b"authorization", f"Bearer {api.admin}".encode())]
        half = [{"type": "http.request", "body": b'{"x":', "more_body": True}]  # then disconnect
        for path in ("/api/v1/models/churn/predict", "/model"):
            sent = await _asgi(
                ModelCalls(api.app.router),
                "POST",
                path,
                b"",
                headers=auth,
                messages=half,
                outer_app=api.app,
            )
            assert sent == [], path  # nobody to answer; before, a 500 and a logged traceback

    with_api(scenario, jobs=False)


def test_other_methods_and_paths_go_on_to_the_app(with_api: Callable[..., Any]) -> None:
    async def scenario(api: Api) -> None:
        api.services.registry.create_model("churn")
        answer = await api.client.get("/api/v1/models/churn/predict", headers=api.auth())
        assert answer.status_code == 405
        answer = await api.client.post("/api/v1/models/churn/predict/x", headers=api.auth())
        assert answer.status_code == 404
        answer = await api.client.post(
            "/api/v1/models/churn/predict", content=b"{}", headers=api.auth()
        )
        assert answer.status_code == 503 and answer.json()["success"] is False

    with_api(scenario, jobs=False)
