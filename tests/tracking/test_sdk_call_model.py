"""call_model against a real HTTP server on 127.0.0.1 answering in the reference shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import modelyard
from modelyard.errors import InvalidInput, NotFound, Overloaded, ServerUnreachable, Unauthorized

LoopbackServer = Any  # the fixture type lives in conftest.py


def _model(method: str, path: str, body: Any) -> tuple[int, Any]:
    if path != "/model" or method != "POST":
        return 404, {"code": "not_found", "message": f"no route {method} {path}"}
    if body["accessKey"] == "busy":
        return 429, {"success": False, "message": "all replicas busy for 30 s"}
    if body["accessKey"] != "mkey":
        return 404, {"success": False, "message": f"no model with access key {body['accessKey']!r}"}
    return 200, {"success": True, "response": {"echo": body["request"]}, "ReplicaID": "r-0"}


def test_call_model_posts_the_reference_body_with_the_bearer_key(
    http_server: Callable[..., LoopbackServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http_server(_model)
    monkeypatch.setenv("MODELYARD_URL", server.url + "/")
    monkeypatch.setenv("MODELYARD_API_KEY", "env-key")
    out = modelyard.call_model("mkey", {"tenure": 3})
    assert out == {"success": True, "response": {"echo": {"tenure": 3}}, "ReplicaID": "r-0"}
    assert out["response"] == {"echo": {"tenure": 3}}
    seen = server.requests[0]
    assert (seen.method, seen.path) == ("POST", "/model")
    assert seen.body == {"accessKey": "mkey", "request": {"tenure": 3}}
    assert seen.headers["Authorization"] == "Bearer env-key"
    modelyard.call_model("mkey", [1, 2], api_key="explicit")
    assert server.requests[1].headers["Authorization"] == "Bearer explicit"


def test_http_errors_become_modelyard_errors_with_the_server_message(
    http_server: Callable[..., LoopbackServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http_server(_model)
    monkeypatch.setenv("MODELYARD_URL", server.url)
    with pytest.raises(NotFound, match=r"HTTP 404: no model with access key 'other'"):
        modelyard.call_model("other", {})
    with pytest.raises(Overloaded, match="all replicas busy") as info:
        modelyard.call_model("busy", {})
    assert info.value.details["status"] == 429


def test_unauthorized_with_a_plain_text_body(
    http_server: Callable[..., LoopbackServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http_server(lambda m, p, b: (401, "api key expired"))
    monkeypatch.setenv("MODELYARD_URL", server.url)
    with pytest.raises(Unauthorized, match="HTTP 401: api key expired"):
        modelyard.call_model("mkey", {})


def test_missing_url_says_to_set_it() -> None:
    with pytest.raises(InvalidInput, match="set MODELYARD_URL"):
        modelyard.call_model("mkey", {})


def test_unreachable_server_and_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MODELYARD_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(ServerUnreachable, match="no answer from"):
        modelyard.call_model("mkey", {})
    with pytest.raises(InvalidInput, match="not JSON-encodable"):
        modelyard.call_model("mkey", {"x": object()})
    with pytest.raises(InvalidInput, match="model_access_key"):
        modelyard.call_model("", {})
