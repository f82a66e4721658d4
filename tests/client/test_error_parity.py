"""The SDK and the CLI raise the same exception for every error a Modelyard server can send.

The codes come from the one table (``modelyard.errors.CODES``); a guard checks that every
``ModelyardError`` subclass anywhere in the package names a code that table lists. A real HTTP
server on 127.0.0.1 then answers each code (with its own status, and with a status that says
something else, since the code comes first), answers without a code and plain-text answers
from something that is not Modelyard; the SDK (``read_metrics``, ``call_model``, a monitor's
remote access) and the CLI's client must raise the same class with the same code and status.
The last test asks the real Modelyard server for the refusals its framework makes itself.
"""

from __future__ import annotations

import http.server
import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

import modelyard
from _live import remote_sdk
from modelyard import errors
from modelyard.cli.client import connect
from modelyard.errors import CODES, ModelyardError, error_body, error_class
from modelyard.monitors.remote import RemoteAccess
from modelyard.tracking import backends
from modelyard.tracking.remote import RemoteBackend

DEPLOYMENT = "crn:modelyard:deployment/33333333-3333-4333-8333-333333333333"
OTHER_STATUSES = [400, 401, 403, 404, 405, 409, 413, 415, 418, 422, 429, 500, 502, 503, 504]


def _every_error_class() -> list[type[ModelyardError]]:
    """Every ModelyardError subclass of every module of the package (``__main__``s and the demo's
    sample user project left out: they are programs, not library code)."""
    for module in pkgutil.walk_packages(modelyard.__path__, "modelyard."):
        if not module.name.endswith("__main__") and ".demo.project" not in module.name:
            importlib.import_module(module.name)
    found: list[type[ModelyardError]] = []
    todo = [ModelyardError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("modelyard."):  # not the tests' own subclasses
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


_CLASSES = _every_error_class()
# The status each code is sent with: its class's (a code shared by several classes, such as
# build_failed, has one status), and 500 for a model's own exception in the gateway's envelope.
NATURAL = {cls.code: cls.status for cls in _CLASSES} | {"model_error": 500}


def test_every_error_class_names_a_code_of_the_table() -> None:
    missing = sorted(
        f"{c.__module__}.{c.__name__}: {c.code}" for c in _CLASSES if c.code not in CODES
    )
    assert missing == [], "add these codes to modelyard.errors.CODES"
    assert set(NATURAL) == set(CODES)  # and every code of the table is one a class sends
    for name in errors.__all__:
        assert CODES[getattr(errors, name).code] is getattr(errors, name)


def test_the_error_body_is_built_once() -> None:
    err = errors.Overloaded("all replicas busy", retry_after_s=2)
    assert err.to_dict() == error_body("overloaded", "all replicas busy", {"retry_after_s": 2})
    assert error_body("model_error", "boom", type="KeyError") == {
        "code": "model_error",
        "message": "boom",
        "type": "KeyError",
    }


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Answer]]:
    """A stdlib HTTP server on 127.0.0.1 answering every request with ``answer``."""
    answer = Answer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    host, port = httpd.server_address[:2]
    yield f"http://{host}:{port}", answer
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def answer(server: tuple[str, Answer], monkeypatch: pytest.MonkeyPatch) -> Iterator[Answer]:
    url, found = server
    monkeypatch.setenv("MODELYARD_URL", url)
    monkeypatch.setenv("MODELYARD_API_KEY", "k1")
    backends.close_all()
    yield found
    backends.close_all()


def _raised(call: Callable[[], object]) -> ModelyardError:
    with pytest.raises(ModelyardError) as info:
        call()
    return info.value


def _all_clients_raise(expected: type[ModelyardError], status: int) -> list[ModelyardError]:
    """The error of the CLI's client and of three SDK paths, checked to agree."""
    backend = backends.select()
    assert isinstance(backend, RemoteBackend)
    raised = [
        _raised(lambda: connect().call("GET", "/api/v1/models")),
        _raised(lambda: modelyard.read_metrics(model_deployment_crn=DEPLOYMENT)),
        _raised(lambda: modelyard.call_model("mya_key", {"x": 1})),
        _raised(lambda: RemoteAccess(backend).resolve(DEPLOYMENT, None)),
    ]
    for error in raised:
        assert type(error) is expected, (error, expected)
        assert error.status == status
    assert len({e.code for e in raised}) == 1
    return raised


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize("shape", ["rest", "envelope"])
def test_each_code_raises_the_same_in_the_sdk_and_the_cli(
    answer: Answer, code: str, shape: str
) -> None:
    message = f"refused with {code}"
    inner = error_body(code, message, {"field": "x"})
    document = {"error": inner} if shape == "rest" else {"success": False, "error": inner}
    answer.body = orjson.dumps(document)
    for status in (NATURAL[code], 500):  # the code decides, whatever the status says
        answer.status = status
        cli, sdk, *_ = _all_clients_raise(CODES[code], status)
        assert cli.code == sdk.code == code
        assert cli.message == message  # the CLI prints the server's message as it is
        assert sdk.message.endswith(f"failed with HTTP {status}: {message}")
        assert cli.details == {"field": "x"}
        assert sdk.details == {"field": "x", "status": status}


@pytest.mark.parametrize("status", OTHER_STATUSES)
def test_answers_without_a_known_code_raise_the_class_of_their_status(
    answer: Answer, status: int
) -> None:
    expected = error_class(None, status)
    answer.status = status
    answer.body = orjson.dumps({"error": error_body("http_error", "refused by the framework")})
    _all_clients_raise(expected, status)
    answer.body, answer.content_type = b"<html>bad gateway</html>", "text/html"  # a proxy
    cli, sdk, *_ = _all_clients_raise(expected, status)
    assert cli.message == "<html>bad gateway</html>"
    assert cli.code == sdk.code == expected.code
    answer.content_type = "application/json"


def test_no_answer_is_server_unreachable_in_both(
    monkeypatch: pytest.MonkeyPatch, modelyard_home: Path
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MODELYARD_URL", f"http://127.0.0.1:{port}")
    backends.close_all()
    try:
        raised = _all_clients_raise(errors.ServerUnreachable, 503)
    finally:
        backends.close_all()
    assert "start it with 'modelyard server'" in raised[0].message
    assert "check that the server runs" in raised[1].message


def test_the_real_server_refusals_raise_the_same_in_both(
    modelyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refusals of the real server: its framework's 404, 405 and 422, and a wrong key's 401."""
    with remote_sdk(modelyard_home, monkeypatch):
        client = connect()
        backend = backends.select()
        assert isinstance(backend, RemoteBackend)
        sdk = backend.client
        for method, path, body, expected in [
            ("GET", "/api/v1/no-such-route", None, errors.NotFound),
            ("DELETE", "/api/v1/metrics", None, errors.InvalidInput),
            ("POST", "/api/v1/metrics/delayed", {"predictionUuid": 1}, errors.InvalidInput),
        ]:
            cli_error = _raised(lambda: client.call(method, path, body))  # noqa: B023
            sdk_error = _raised(lambda: sdk.call(method, path, body, what="x"))  # noqa: B023
            assert type(cli_error) is type(sdk_error) is expected
            assert cli_error.code == sdk_error.code and cli_error.code in CODES
        monkeypatch.setenv("MODELYARD_API_KEY", "myk_" + "z" * 43)
        backends.close_all()
        wrong = _raised(lambda: modelyard.read_metrics(model_deployment_crn=DEPLOYMENT))
        assert type(wrong) is type(_raised(lambda: connect().call("GET", "/api/v1/models")))
        assert type(wrong) is errors.Unauthorized and wrong.code == "unauthorized"
