"""The remote backend's records go through the embedded backend's ``BufferedWriter`` over an
``HttpSink``, checked against a real loopback HTTP server: a batch the server cannot take now
is retried with back-off (nothing lost, nothing twice), a batch it refuses is split until the
refused records are isolated and named while every other record is written, and a refused key
drops its batch at once instead of trying each record."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import modelyard
from modelyard.client import Client
from modelyard.errors import (
    Conflict,
    GatewayTimeout,
    ModelyardError,
    Overloaded,
    StoreUnavailable,
    Unauthorized,
    error_body,
)
from modelyard.store.base import Identity, Prediction
from modelyard.store.writer import BufferedWriter
from modelyard.tracking.remote import HttpSink

LoopbackServer = Any  # the fixture type lives in conftest.py
Handler = Callable[[str, str, Any], tuple[int, Any]]

DEPLOYMENT = "crn:modelyard:deployment/44444444-4444-4444-8444-444444444444"
IDENTITY = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", DEPLOYMENT)
PATH = "/api/v1/metrics/predictions"


class Receiver:
    """What the server stored, answering each POST with ``refuse(uuids)`` or storing the batch."""

    def __init__(self, refuse: Callable[[list[str]], tuple[int, Any] | None]) -> None:
        self.refuse = refuse
        self.stored: list[str] = []
        self.posts = 0
        self.lock = threading.Lock()

    def __call__(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        assert (method, path) == ("POST", PATH)
        uuids = [p["predictionUuid"] for p in body["predictions"]]
        with self.lock:
            self.posts += 1
            refused = self.refuse(uuids)
            if refused is not None:
                return refused
            self.stored.extend(uuids)
        return 204, None


def _flush_until_clean(flush: Callable[[], None], attempts: int = 200) -> list[ModelyardError]:
    """Flush until a flush raises nothing; the errors the failed flushes raised, in order."""
    raised: list[ModelyardError] = []
    for _ in range(attempts):
        try:
            flush()
        except ModelyardError as exc:
            raised.append(exc)
            time.sleep(0.01)
        else:
            return raised
    raise AssertionError(f"flush still failing after {attempts} attempts: {raised[-3:]}")


def _predictions(n: int) -> list[Prediction]:
    return [Prediction(f"u{i}", IDENTITY, 1_000 + i, 1_001 + i, {"i": i}) for i in range(n)]


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "store_unavailable", StoreUnavailable),
        (429, "overloaded", Overloaded),
        (504, "timeout", GatewayTimeout),
    ],
)
def test_a_batch_the_server_cannot_take_now_is_retried_until_it_can(
    http_server: Callable[[Handler], LoopbackServer],
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    code: str,
    expected: type[ModelyardError],
) -> None:
    failures = iter(range(3))  # the first three POSTs are refused

    def busy(uuids: list[str]) -> tuple[int, Any] | None:
        if next(failures, None) is None:
            return None
        return status, {"error": error_body(code, "not now")}

    receiver = Receiver(busy)
    server = http_server(receiver)
    monkeypatch.setenv("MODELYARD_URL", server.url)
    monkeypatch.setenv("MODELYARD_DEPLOYMENT_CRN", DEPLOYMENT)

    @modelyard.model_metrics
    def predict(x: int) -> int:
        modelyard.track_metric("x", x)
        return x

    uuids = [predict(i)["uuid"] for i in range(5)]
    raised = _flush_until_clean(modelyard.flush)
    assert raised and all(type(e) is expected for e in raised)
    assert "sending prediction records failed with HTTP" in raised[0].message
    assert receiver.stored == uuids  # all of them, once each, in order
    assert receiver.posts == 4


def test_refused_records_are_isolated_named_and_the_others_written(
    http_server: Callable[[Handler], LoopbackServer],
) -> None:
    bad = {"u3", "u11"}

    def conflict(uuids: list[str]) -> tuple[int, Any] | None:
        taken = sorted(bad & set(uuids))
        if not taken:
            return None
        message = f"prediction uuids already stored: {', '.join(taken)}"
        return 409, {"error": error_body("conflict", message, {"uuids": taken})}

    receiver = Receiver(conflict)
    server = http_server(receiver)
    sent = _predictions(16)
    with BufferedWriter(HttpSink(Client(server.url, "k1")), flush_interval_ms=20) as writer:
        for p in sent:
            writer.submit(p)
        raised = _flush_until_clean(writer.flush)
    assert [type(e) for e in raised] == [Conflict, Conflict]
    assert [e.message for e in raised] == [
        "sending prediction 'u3' failed with HTTP 409: prediction uuids already stored: u3",
        "sending prediction 'u11' failed with HTTP 409: prediction uuids already stored: u11",
    ]
    assert raised[0].details["uuids"] == ["u3"]
    assert sorted(receiver.stored) == sorted(p.uuid for p in sent if p.uuid not in bad)
    assert len(receiver.stored) == len(set(receiver.stored))


def test_a_refused_key_drops_the_batch_at_once(
    http_server: Callable[[Handler], LoopbackServer],
) -> None:
    receiver = Receiver(lambda uuids: (401, {"error": error_body("unauthorized", "bad key")}))
    server = http_server(receiver)
    with BufferedWriter(HttpSink(Client(server.url, "wrong")), flush_interval_ms=20) as writer:
        for p in _predictions(8):
            writer.submit(p)
        raised = _flush_until_clean(writer.flush)
        time.sleep(0.1)  # nothing is retried
    assert [type(e) for e in raised] == [Unauthorized]
    assert raised[0].message == "sending prediction records failed with HTTP 401: bad key"
    assert receiver.posts == 1 and receiver.stored == []
    assert writer.pending == 0
