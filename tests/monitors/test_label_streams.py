"""The server's label streams (``monitors.label_streams``) against the real brokers and stores:
a monitor job whose spec's ``labels:`` names a NATS JetStream or RabbitMQ connection gets a
consumer; labels published there become delayed metrics; bad messages are reported, counted
and not redelivered; jobs that come, change and go are followed; and a real server process
stopped with messages pending loses none of them."""

from __future__ import annotations

import asyncio
import signal
import textwrap
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import _async
from _server import ServerProcess
from _streams import Broker, body, broker, connection_for
from _streams import create as create_stream
from _streams import delete as delete_stream
from _wait import wait_until
from modelyard.connectors import Credentials
from modelyard.ids import new_crn, new_prediction_uuid
from modelyard.monitors.label_streams import LabelStreams
from modelyard.registry import Registry, SecretBox
from modelyard.specs import JobSpec
from modelyard.store import MetricsStore, open_store
from modelyard.store.base import Identity, Prediction

run = partial(_async.run, timeout_s=90)
T0 = 1_780_000_000_000


@dataclass
class World:
    store: MetricsStore
    registry: Registry
    project_crn: str
    folder: Path
    ident: Identity
    uuids: list[str]


def make_world(store: MetricsStore, home: Path, n: int = 50) -> World:
    registry = Registry(store)
    registry.secrets.configure(SecretBox.for_home(home))
    owner = f"u{uuidlib.uuid4().hex[:6]}"
    registry.people.create_user(owner)
    project_crn = registry.people.create_project("churn", owner=owner).crn
    ident = Identity(new_crn("model"), new_crn("build"), new_crn("deployment"))
    uuids = predictions(store, ident, n)
    folder = home / "project"
    folder.mkdir(exist_ok=True)
    return World(store, registry, project_crn, folder, ident, uuids)


def predictions(store: MetricsStore, ident: Identity, n: int, chunk: int = 5000) -> list[str]:
    uuids = []
    for start in range(0, n, chunk):
        batch = []
        for i in range(start, min(n, start + chunk)):
            uuid = new_prediction_uuid()
            uuids.append(uuid)
            batch.append(Prediction(uuid, ident, T0 + i, T0 + i + 1, {"probability": 0.5}))
        store.write_predictions(batch)
    return uuids


def monitor_job(world: World, src: Broker, name: str = "watch", labels: str = "") -> str:
    """A monitor job ``name`` whose spec reads its labels from ``src`` (connection 'events',
    made here with the RabbitMQ password as project secret RABBIT_PW)."""
    try:
        world.registry.connections.get(world.project_crn, "events")
    except Exception:
        conn = src.connection
        if conn.secrets:
            world.registry.secrets.set(world.project_crn, "RABBIT_PW", "guest", "test")
        world.registry.connections.create(
            world.project_crn, "events", conn.kind, dict(conn.options), dict(conn.secrets), "t"
        )
    labels = labels or "{connection: events, uuid_column: uuid, columns: [churned]}"
    (world.folder / f"{name}.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            deployment: {world.ident.deployment_crn}
            prediction: probability
            label: churned
            window: 1h
            labels: {labels}
            """
        )
    )
    world.registry.create_job(
        JobSpec(
            name=name, project=str(world.folder), script=None, monitor=f"{name}.yaml", manual=True
        ),
        world.project_crn,
    )
    return name


def delayed(store: MetricsStore, uuid: str) -> dict[str, Any]:
    return {k: v for k, v in store.find_prediction(uuid).metrics.items() if k == "churned"}


@pytest.fixture(params=["nats", "rabbitmq"])
def source(request: pytest.FixtureRequest) -> Iterator[Broker]:
    with broker(request.param) as made:
        yield made


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[MetricsStore]:
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        yield store
    finally:
        store.close()


async def streaming(world: World, until: Any, **kw: Any) -> LabelStreams:
    """Run the manager (watching every 0.1 s) until ``until()`` is true, then stop it."""
    streams = LabelStreams(world.registry, world.store, interval_s=0.1, **kw)
    streams.start()
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not await asyncio.to_thread(until):
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.05)
    finally:
        await streams.stop()
    return streams


def test_labels_arrive_and_are_stored(source: Broker, sqlite_store: MetricsStore, tmp_path: Path):
    world = make_world(sqlite_store, tmp_path)
    monitor_job(world, source)
    ghost = str(uuidlib.uuid4())
    source.publish(
        [body(u, churned=i % 2) for i, u in enumerate(world.uuids)]
        + [body(ghost, churned=1), b"{oops", body(world.uuids[0], other=1)]
    )
    imports = world.registry.labels.imports

    def done() -> bool:
        return sum(r.rows_read for r in imports("watch")) >= len(world.uuids) + 3

    run(streaming(world, done, record_every_s=0.2))
    for i, u in enumerate(world.uuids):
        assert delayed(sqlite_store, u) == {"churned": i % 2}
    records = imports("watch")
    assert sum(r.matched for r in records) == len(world.uuids)
    assert sum(r.unmatched for r in records) == 1
    assert ghost in [s for r in records for s in r.unmatched_sample]
    errors = " ".join(r.error or "" for r in records)
    assert "2 messages refused" in errors or errors.count("1 messages refused") == 2
    assert "not JSON" in errors and "no label column 'churned'" in errors
    assert ("sequence" if source.kind == "nats" else "delivery tag") in errors
    assert "connection 'events'" in errors
    assert {r.connection for r in records} == {"events"}
    wait_until(lambda: source.pending() == 0, 10, "every message settled")


def test_redelivered_labels_are_stored_once(source: Broker, sqlite_store: MetricsStore, tmp_path):
    world = make_world(sqlite_store, tmp_path, n=5)
    monitor_job(world, source)
    source.publish([body(u, churned=1) for u in world.uuids] * 2)  # each label twice
    imports = world.registry.labels.imports

    def done() -> bool:
        return sum(r.rows_read for r in imports("watch")) >= 10

    run(streaming(world, done, record_every_s=0.1))
    assert sum(r.duplicates for r in imports("watch")) == 5
    for u in world.uuids:
        history = sqlite_store.delayed_history(u)
        assert [(h.key, h.value) for h in history] == [("churned", 1)]


def test_postgres_store(postgres_schema_url: str, tmp_path: Path) -> None:
    store = open_store(postgres_schema_url)
    try:
        world = make_world(store, tmp_path, n=200)
        with broker("nats") as src:
            monitor_job(world, src)
            src.publish([body(u, churned=1) for u in world.uuids])

            def done() -> bool:
                return sum(r.matched for r in world.registry.labels.imports("watch")) >= 200

            run(streaming(world, done, record_every_s=0.1))
        assert all(delayed(store, u) == {"churned": 1} for u in world.uuids)
    finally:
        store.close()


def test_jobs_that_come_change_and_go(sqlite_store: MetricsStore, tmp_path: Path) -> None:
    world = make_world(sqlite_store, tmp_path, n=3)
    with broker("nats") as src, broker("rabbitmq") as other:
        job = monitor_job(world, src)

        async def scenario() -> None:
            streams = LabelStreams(world.registry, world.store, interval_s=3600)
            try:
                assert await streams.tick() == {job: "events"}
                world.registry.set_paused(job, True)
                assert await streams.tick() == {}
                world.registry.set_paused(job, False)
                assert await streams.tick() == {job: "events"}
                # The spec now reads another connection: the consumer is restarted on it.
                conn = other.connection
                world.registry.secrets.set(world.project_crn, "RABBIT_PW", "guest", "test")
                world.registry.connections.create(
                    world.project_crn, "queue", conn.kind, dict(conn.options),
                    dict(conn.secrets), "t",
                )  # fmt: skip
                spec = world.folder / f"{job}.yaml"
                spec.write_text(spec.read_text().replace("connection: events", "connection: queue"))
                assert await streams.tick() == {job: "queue"}
                await other.publish_async([body(world.uuids[0], churned=1)])
                await asyncio.to_thread(
                    wait_until, lambda: delayed(world.store, world.uuids[0]), 20, "the label"
                )
                world.registry.delete_job(job)
                assert await streams.tick() == {}
            finally:
                await streams.stop()

        run(scenario())


def test_join_and_missing_connection_are_reported(
    sqlite_store: MetricsStore, tmp_path: Path
) -> None:
    world = make_world(sqlite_store, tmp_path, n=1)
    with broker("nats") as src:
        monitor_job(world, src, "joined", "{connection: events, join: {column: cid}, columns: [y]}")
        monitor_job(world, src, "lost", "{connection: nowhere, uuid_column: uuid}")

        async def scenario() -> None:
            streams = LabelStreams(world.registry, world.store, interval_s=3600)
            try:
                assert await streams.tick() == {}
                await streams.tick()  # a problem is recorded once, not at every look
            finally:
                await streams.stop()

        run(scenario())
    (joined,) = world.registry.labels.imports("joined")
    assert "'join' is not supported for streams" in (joined.error or "")
    (lost,) = world.registry.labels.imports("lost")
    assert "nowhere" in (lost.error or "")


def test_a_failing_connection_is_recorded_and_tried_again(
    sqlite_store: MetricsStore, tmp_path: Path
) -> None:
    """The stream does not exist yet: the failure is recorded (naming the connection and the
    stream); once it is created, the consumer connects and stores."""
    world = make_world(sqlite_store, tmp_path, n=2)
    name = f"H4_LATE_{uuidlib.uuid4().hex[:8].upper()}"
    late = Broker("nats", name, connection_for("nats", name), Credentials())
    monitor_job(world, late)
    imports = world.registry.labels.imports

    async def scenario() -> None:
        streams = LabelStreams(world.registry, world.store, interval_s=0.1, record_every_s=0.1)
        streams.start()
        try:
            await asyncio.to_thread(wait_until, lambda: imports("watch"), 20, "the failure")
            await create_stream("nats", name)
            await late.publish_async([body(u, churned=1) for u in world.uuids])
            await asyncio.to_thread(
                wait_until, lambda: delayed(world.store, world.uuids[1]), 30, "the labels"
            )
        finally:
            await streams.stop()
            await delete_stream("nats", name)

    run(scenario())
    failed = imports("watch", limit=100)[-1]
    assert failed.rows_read == 0 and failed.connection == "events"
    assert f"connection 'events' (nats at nats://127.0.0.1:4222): stream {name!r} does not " in (
        failed.error or ""
    )


# -- a real server ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nats", "rabbitmq"])
def test_a_server_stopped_with_labels_pending_loses_none(
    kind: str, postgres_schema_url: str, tmp_path: Path
) -> None:
    """End to end: a real ``modelyard server`` on PostgreSQL consumes a monitor's stream; it is
    stopped (SIGTERM) in the middle of 20,000 labels and started again: every label is stored,
    none is left in the broker."""
    home = tmp_path / "home"
    server = ServerProcess(home, postgres_schema_url, {"MODELYARD_SYNC_INTERVAL": "200ms"})
    server.start()
    store = open_store(postgres_schema_url)
    try:
        world = make_world(store, home, n=20_000)
        with broker(kind) as src:
            monitor_job(world, src)
            src.publish([body(u, churned=i % 2) for i, u in enumerate(world.uuids)])
            count = partial(_labelled, store, world.ident)
            stored = wait_until(count, 60, f"the first labels stored\n{server.output}")
            assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # a graceful stop
            at_stop = count()
            assert at_stop + src.pending() >= len(world.uuids), "a label was lost"
            server.start()
            wait_until(lambda: count() >= len(world.uuids), 90, f"every label\n{server.output}")
            wait_until(lambda: src.pending() == 0, 30, "every message acknowledged")
            assert stored > 0
            server.stop(signal.SIGTERM)
        records = world.registry.labels.imports("watch", limit=1000)
        assert sum(r.matched for r in records) >= len(world.uuids)
        assert all(r.error is None for r in records)
    finally:
        server.stop(signal.SIGKILL)
        store.close()


def _labelled(store: MetricsStore, ident: Identity) -> int:
    return store.info().delayed
