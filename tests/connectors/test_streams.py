"""NATS JetStream and RabbitMQ consumers and probes against the real brokers (127.0.0.1:4222 and
127.0.0.1:5672): each test makes its own stream or queue (tests/_streams.py) and removes it."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import _async
from _streams import NATS_URL, PROJECT, Broker, body, broker, connection_for
from _wait import wait_until
from modelyard.connectors import Connection, ConnectorError, Credentials
from modelyard.connectors.streams import Consumer, consumer_name, open_consumer, probe
from modelyard.errors import InvalidInput
from modelyard.runtime import free_port

run = partial(_async.run, timeout_s=60)
KINDS = ["nats", "rabbitmq"]


@pytest.fixture(params=KINDS)
def source(request: pytest.FixtureRequest) -> Iterator[Broker]:
    with broker(request.param) as made:
        yield made


def convert(message: Any, ref: str) -> tuple[str, dict[str, Any]]:
    if "uuid" not in message or "y" not in message:
        raise InvalidInput(f"{ref} has no uuid or y")
    return message["uuid"], {"y": message["y"]}


def consumer(src: Broker, monitor: str = "m1", **kw: Any) -> Consumer:
    return open_consumer(src.connection, src.credentials, monitor, **kw)


async def consume_until(c: Consumer, stored: list[Any], n: int, store: Any = None) -> None:
    """Run ``c`` until ``stored`` holds ``n`` items, then stop it (the batch in flight ends)."""
    stop = asyncio.Event()

    async def keep(items: list[Any]) -> None:
        stored.extend(items)
        if len(stored) >= n:
            stop.set()

    await c.open()
    try:
        await c.run(convert, store or keep, stop)
    finally:
        await c.close()


# -- probes ------------------------------------------------------------------------------------
def test_probe_says_how_many_messages(source: Broker) -> None:
    source.publish([body(str(i), y=1) for i in range(3)])
    found = probe(source.connection, source.credentials)
    assert found.ok
    assert f"{source.name!r} holds 3 messages" in found.detail
    assert ("NATS" if source.kind == "nats" else "RabbitMQ") in found.detail


def test_probe_nats_subject_count() -> None:
    with broker("nats") as src:
        src.publish([body("a", y=1), body("b", y=0)])
        options = {**src.connection.options, "subject": f"{src.name}.labels"}
        found = probe(Connection(PROJECT, "events", "nats", options), Credentials())
        assert "holds 2 messages, 2 on subject" in found.detail


@pytest.mark.parametrize("kind", KINDS)
def test_probe_missing_stream_or_queue(kind: str) -> None:
    missing = connection_for(kind, f"H4_NONE_{uuid.uuid4().hex[:8]}")
    credentials = Credentials({"password": "guest"} if kind == "rabbitmq" else {})
    with pytest.raises(ConnectorError, match="does not exist") as err:
        probe(missing, credentials)
    assert "'events'" in err.value.message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("host", "what"),
    [("127.0.0.1", "connection refused"), ("no-such-host.invalid", "unknown host")],
)
def test_probe_unreachable(kind: str, host: str, what: str) -> None:
    port = free_port()
    if kind == "nats":
        conn = Connection(
            PROJECT, "ev", kind, {"servers": [f"nats://{host}:{port}"], "stream": "S"}
        )
    else:
        conn = Connection(PROJECT, "ev", kind, {"host": host, "port": port, "queue": "q"})
    with pytest.raises(ConnectorError, match=what) as err:
        probe(conn, Credentials({"password": "s3cr3t-value"}))
    assert "connection 'ev'" in err.value.message
    assert "s3cr3t-value" not in err.value.message


def test_probe_rabbitmq_bad_credentials_and_vhost() -> None:
    with broker("rabbitmq") as src:
        with pytest.raises(ConnectorError, match="bad credentials") as err:
            probe(src.connection, Credentials({"password": "wrong-pw-Q9"}))
        assert "wrong-pw-Q9" not in err.value.message
        novhost = Connection(PROJECT, "ev", "rabbitmq", {**src.connection.options, "vhost": "nov"})
        with pytest.raises(ConnectorError, match="vhost 'nov'"):
            probe(novhost, src.credentials)


@pytest.fixture
def nats_with_auth(tmp_path: Path) -> Iterator[str]:
    """A nats-server of its own that wants user ``u`` with password ``right-pw-7``."""
    port = free_port()
    argv = [
        "nats-server",
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "--user",
        "u",
        "--pass",
        "right-pw-7",
    ]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            wait_until(partial(_listens, port), 10, "nats-server to listen")
            yield f"nats://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


def _listens(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_probe_nats_bad_credentials(nats_with_auth: str) -> None:
    conn = Connection(
        PROJECT,
        "ev",
        "nats",
        {"servers": [nats_with_auth], "stream": "S"},
        {"user": "U", "password": "P"},
    )
    with pytest.raises(ConnectorError, match="bad credentials") as err:
        probe(conn, Credentials({"user": "u", "password": "wrong-pw-8"}))
    assert "wrong-pw-8" not in err.value.message
    # The right ones connect (no JetStream on that server: the stream is missing, not refused).
    with pytest.raises(ConnectorError, match="stream") as err:
        probe(conn, Credentials({"user": "u", "password": "right-pw-7"}))
    assert "bad credentials" not in err.value.message


# -- consuming ---------------------------------------------------------------------------------
def test_labels_arrive_in_batches_and_are_acknowledged(source: Broker) -> None:
    source.publish([body(f"u{i}", y=i % 2) for i in range(25)])
    stored: list[Any] = []
    c = consumer(source, batch=10)
    run(consume_until(c, stored, 25))
    assert sorted(stored) == sorted((f"u{i}", {"y": i % 2}) for i in range(25))
    assert c.stats.acked == 25 and c.stats.bad == 0
    wait_until(lambda: source.pending() == 0, 10, "every message acknowledged")


def test_a_store_that_fails_hands_the_batch_back(source: Broker) -> None:
    source.publish([body(f"u{i}", y=1) for i in range(5)])
    stored: list[Any] = []
    calls = 0

    async def flaky(items: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database down")
        stored.extend(items)
        if len(stored) >= 5:
            stop.set()

    stop = asyncio.Event()

    async def scenario() -> None:
        c = consumer(source, batch=10, ack_wait_s=1.0)
        await c.open()
        try:
            with pytest.raises(RuntimeError, match="database down"):
                await c.run(convert, flaky, stop)
            await c.run(convert, flaky, stop)  # the same messages come again
            assert c.stats.redelivered >= 5
        finally:
            await c.close()

    run(scenario())
    assert sorted(u for u, _ in stored) == [f"u{i}" for i in range(5)]
    assert source.pending() == 0


def test_stopped_between_fetch_and_store_loses_nothing(source: Broker) -> None:
    """A consumer cancelled while its store hangs, and one that fetched and closed without
    storing (a process that died): the next consumer gets every message."""
    source.publish([body(f"u{i}", y=1) for i in range(6)])

    async def scenario() -> None:
        storing = asyncio.Event()

        async def hang(items: list[Any]) -> None:
            storing.set()
            await asyncio.Event().wait()

        c = consumer(source, batch=3, ack_wait_s=1.0)
        await c.open()
        task = asyncio.create_task(c.run(convert, hang, asyncio.Event()))
        await storing.wait()  # fetched, in the store: then stopped
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await c.close()
        d = consumer(source, batch=3, ack_wait_s=1.0)
        await d.open()
        fetched = await d.fetch(5)
        assert fetched
        await d.close()  # died: nothing stored, nothing acknowledged

    run(scenario())
    stored: list[Any] = []
    run(consume_until(consumer(source, batch=10, ack_wait_s=1.0), stored, 6))
    assert sorted({u for u, _ in stored}) == [f"u{i}" for i in range(6)]
    assert source.pending() == 0


def test_bad_messages_are_refused_once_and_reported(source: Broker) -> None:
    source.publish([b"not json", b"[1, 2]", body("u0"), body("u1", y=1)])
    stored: list[Any] = []
    c = consumer(source, batch=10, ack_wait_s=1.0)
    run(consume_until(c, stored, 1))
    assert stored == [("u1", {"y": 1})]
    assert c.stats.bad == 3
    reasons = [b.reason for b in c.stats.bad_sample]
    assert reasons[0].startswith("not JSON")
    assert reasons[1] == "a JSON list, not an object"
    assert "has no uuid or y" in reasons[2]
    place = "sequence" if source.kind == "nats" else "delivery tag"
    assert all(place in b.ref and source.name in b.ref for b in c.stats.bad_sample)
    assert c.stats.bad_sample[0].sample == "not json"

    async def nothing_again() -> list[Any]:
        d = consumer(source, batch=10, ack_wait_s=1.0)
        await d.open()
        try:
            await asyncio.sleep(1.2)  # past ack_wait: a message that was not settled comes back
            return await d.fetch(0.5)
        finally:
            await d.close()

    assert run(nothing_again()) == []
    assert source.pending() == 0


def test_a_store_refusing_one_item_stores_the_others(source: Broker) -> None:
    source.publish([body("u0", y=1), body("BAD", y=1), body("u2", y=1)])
    stored: list[Any] = []

    def picky(items: list[Any]) -> None:  # a sync store works too
        if any(u == "BAD" for u, _ in items):
            raise InvalidInput("uuid 'BAD' is not accepted")
        stored.extend(items)

    async def scenario() -> Consumer:
        c = consumer(source, batch=10)
        await c.open()
        try:
            while c.stats.received < 3:
                raws = await c.fetch(2)
                await c.handle(raws, convert, picky)
        finally:
            await c.close()
        return c

    c = run(scenario())
    assert sorted(u for u, _ in stored) == ["u0", "u2"]
    assert c.stats.bad == 1 and "uuid 'BAD'" in c.stats.bad_sample[0].reason
    assert source.pending() == 0


def test_consumer_names() -> None:
    assert consumer_name("modelyard", "churn.v2 x") == "modelyard-churn_v2_x"
    with pytest.raises(InvalidInput, match="not a stream"):
        open_consumer(Connection(PROJECT, "db", "sqlite", {"path": "/x"}), Credentials(), "m")
    assert NATS_URL.startswith("nats://")
