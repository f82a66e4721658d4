"""Labels per second from an event stream into the metrics store: N label messages (default
100,000) on NATS JetStream (127.0.0.1:4222) and on RabbitMQ (127.0.0.1:5672, guest/guest),
consumed by ``connectors.streams`` in batches and stored the way the server's label streams
store them (``monitors.label_streams``: the spec's column mapping, ``add_delayed_many`` with
``skip_unchanged`` on a worker thread, acknowledge after the store), into a SQLite store and a
PostgreSQL store holding the N predictions. Baselines in the same run:

- raw consume: the same consumer fetching and acknowledging every message, storing nothing;
- bulk store alone: ``add_delayed_many`` of the same N items in batches of the same size, no
  broker.

Each figure publishes its N messages first (not timed) into a stream or queue of its own.

    .venv/bin/python benchmarks/label_streams.py [--n 100000] [--batch 2000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import orjson
from nats.aio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Figure, Report, Timer, timer
from modelyard.connectors import Connection, Credentials
from modelyard.connectors.streams import DEFAULT_BATCH, open_consumer
from modelyard.ids import new_crn, new_prediction_uuid
from modelyard.specs.labels import LabelsSource
from modelyard.store import MetricsStore, open_store
from modelyard.store.base import Identity, Prediction

PG = "postgresql://postgres@127.0.0.1:5432/test"
NATS = "nats://127.0.0.1:4222"
RABBIT = {"host": "127.0.0.1", "port": 5672, "login": "guest", "password": "guest"}
PROJECT = "crn:modelyard:project/bench"
LABELS = LabelsSource.from_value({"connection": "events", "uuid_column": "uuid"}, "churned")


# -- brokers -----------------------------------------------------------------------------------
async def _fill(kind: str, name: str, bodies: list[bytes]) -> None:
    """A new stream or queue ``name`` holding ``bodies``."""
    if kind == "nats":
        nc = Client()
        await nc.connect(NATS)
        try:
            js = nc.jetstream()
            await js.add_stream(name=name, subjects=[f"{name}.>"])
            for start in range(0, len(bodies), 2000):
                chunk = bodies[start : start + 2000]
                await asyncio.gather(*(js.publish(f"{name}.labels", b) for b in chunk))
        finally:
            await nc.close()
        return
    conn = await aio_pika.connect(**RABBIT)
    try:
        channel = await conn.channel()
        await channel.declare_queue(name, durable=True)
        for start in range(0, len(bodies), 2000):
            chunk = bodies[start : start + 2000]
            await asyncio.gather(
                *(channel.default_exchange.publish(aio_pika.Message(b), name) for b in chunk)
            )
    finally:
        await conn.close()


async def _drop(kind: str, name: str) -> None:
    if kind == "nats":
        nc = Client()
        await nc.connect(NATS)
        try:
            await nc.jetstream().delete_stream(name)
        finally:
            await nc.close()
        return
    conn = await aio_pika.connect(**RABBIT)
    try:
        await (await conn.channel()).queue_delete(name)
    finally:
        await conn.close()


def _connection(kind: str, name: str) -> tuple[Connection, Credentials]:
    if kind == "nats":
        return Connection(
            PROJECT, "events", kind, {"servers": [NATS], "stream": name}
        ), Credentials()
    options = {"host": "127.0.0.1", "port": 5672, "queue": name, "user": "guest"}
    conn = Connection(PROJECT, "events", kind, options, {"password": "PW"})
    return conn, Credentials({"password": "guest"})


# -- the timed parts ---------------------------------------------------------------------------
def _convert(message: Any, ref: str) -> tuple[str, dict[str, Any]]:
    key, metrics = LABELS.to_metrics(message, ref)  # the spec's mapping, as the server's
    return str(key), metrics


def _storing(store: MetricsStore | None) -> Callable[[list[Any]], Any]:
    async def keep(items: list[tuple[str, dict[str, Any]]]) -> None:
        if store is None:
            return
        unique = {(u, repr(sorted(m.items()))): (u, m) for u, m in items}  # as label_streams
        await asyncio.to_thread(
            store.add_delayed_many, list(unique.values()), "labels:bench", skip_unchanged=True
        )

    return keep


async def _consume(kind: str, name: str, n: int, batch: int, store: MetricsStore | None) -> Timer:
    connection, credentials = _connection(kind, name)
    consumer = open_consumer(connection, credentials, "bench", batch=batch)
    keep = _storing(store)
    with timer() as took:
        await consumer.open()
        try:
            while consumer.stats.acked + consumer.stats.bad < n:
                raws = await consumer.fetch()
                if raws:
                    await consumer.handle(raws, _convert, keep)
        finally:
            await consumer.close()
    assert consumer.stats.acked == n, consumer.stats
    return took


def one_run(
    kind: str, uuids: list[str], value: int, batch: int, store: MetricsStore | None
) -> Timer:
    name = f"BENCH_{uuid.uuid4().hex[:10]}" if kind == "nats" else f"bench_{uuid.uuid4().hex[:10]}"
    bodies = [orjson.dumps({"uuid": u, "churned": value}) for u in uuids]
    asyncio.run(_fill(kind, name, bodies))
    try:
        return asyncio.run(_consume(kind, name, len(uuids), batch, store))
    finally:
        asyncio.run(_drop(kind, name))


def bulk_alone(store: MetricsStore, uuids: list[str], value: int, batch: int) -> Timer:
    with timer() as took:
        for start in range(0, len(uuids), batch):
            items = [(u, {"churned": value}) for u in uuids[start : start + batch]]
            store.add_delayed_many(items, "labels:bench", skip_unchanged=True)
    return took


def _predictions(store: MetricsStore, n: int) -> list[str]:
    ident = Identity(new_crn("model"), new_crn("build"), new_crn("deployment"))
    uuids = [new_prediction_uuid() for _ in range(n)]
    for start in range(0, n, 10_000):
        store.write_predictions(
            [
                Prediction(u, ident, 1_780_000_000_000 + i, 1_780_000_000_001 + i, {"p": 0.5})
                for i, u in enumerate(uuids[start : start + 10_000], start)
            ]
        )
    return uuids


def _stores(tmp: Path, skip_postgres: bool) -> list[tuple[str, MetricsStore, Callable[[], None]]]:
    out: list[tuple[str, MetricsStore, Callable[[], None]]] = []
    sqlite = open_store(f"sqlite:///{tmp / 'bench.db'}")
    out.append(("SQLite", sqlite, sqlite.close))
    if not skip_postgres:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        pg = open_store(f"{PG}?options=-csearch_path%3D{schema}")

        def close() -> None:
            pg.close()
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

        out.append(("PostgreSQL", pg, close))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    n, batch, repeat = args.n, args.batch, args.repeat
    report = Report("label_streams", {"n": n, "batch": batch, "repeat": repeat})
    with tempfile.TemporaryDirectory() as tmp:
        stores = _stores(Path(tmp), args.skip_postgres)
        try:
            uuids = {name: _predictions(store, n) for name, store, _ in stores}
            first = next(iter(uuids.values()))
            raw = {
                kind: report.add(
                    Figure.rate(
                        f"{kind}: raw consume + ack",
                        "msg/s",
                        n,
                        [one_run(kind, first, 0, batch, None) for _ in range(repeat)],
                    )
                )
                for kind in ("nats", "rabbitmq")
            }
            for name, store, _ in stores:
                bulk = report.add(
                    Figure.rate(
                        f"{name}: add_delayed_many alone",
                        "labels/s",
                        n,
                        [bulk_alone(store, uuids[name], r + 1, batch) for r in range(repeat)],
                    )
                )
                for kind in ("nats", "rabbitmq"):
                    runs = [
                        one_run(kind, uuids[name], 100 + r, batch, store) for r in range(repeat)
                    ]
                    figure = Figure.rate(f"{kind} -> {name}", "labels/s", n, runs)
                    report.add(figure, raw[kind])
                    figure.note = f"x{figure.median / bulk.median:.2f} vs store alone"
        finally:
            for _, _, close in stores:
                close()
    report.console.print(report.table())
    print(f"written to {report.write()}")


if __name__ == "__main__":
    main()
