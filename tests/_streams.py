"""A stream or a queue of its own for one test, on the real brokers: NATS JetStream at
127.0.0.1:4222 and RabbitMQ at 127.0.0.1:5672 (guest/guest).

``broker(kind)`` creates a JetStream stream (subject ``<name>.labels``) or a durable RabbitMQ
queue with a unique name, yields a ``Broker`` (its ``Connection``, ``publish``, ``pending``) and
deletes it after, whatever the test did. Each call opens its own client on a fresh event loop
(``_async.run``), so a sync test can use it between scenarios.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import orjson
from nats.aio.client import Client

from _async import run
from _services import require_service
from modelyard.connectors import Connection, Credentials

__all__ = ["NATS_URL", "PROJECT", "Broker", "body", "broker", "connection_for", "create", "delete"]

NATS_URL = "nats://127.0.0.1:4222"
RABBIT = {"host": "127.0.0.1", "port": 5672, "login": "guest", "password": "guest"}
PROJECT = "crn:modelyard:project/00000000-0000-0000-0000-000000000017"


def body(uuid_: str, **labels: Any) -> bytes:
    """A label message: ``{"uuid": ..., **labels}`` as JSON."""
    return orjson.dumps({"uuid": uuid_, **labels})


@dataclass
class Broker:
    kind: str
    name: str  # the stream's or queue's name
    connection: Connection
    credentials: Credentials

    def publish(self, bodies: Sequence[bytes]) -> None:
        run(self.publish_async(bodies))

    async def publish_async(self, bodies: Sequence[bytes]) -> None:
        if self.kind == "nats":
            nc = await _nats()
            try:
                js = nc.jetstream()
                for chunk in _chunks(bodies):  # each publish awaits its ack: many at once
                    await asyncio.gather(*(js.publish(f"{self.name}.labels", b) for b in chunk))
            finally:
                await nc.close()
            return
        conn = await aio_pika.connect(**RABBIT)
        try:
            exchange = (await conn.channel()).default_exchange
            for chunk in _chunks(bodies):  # each publish awaits its confirm: many at once
                await asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                            routing_key=self.name,
                        )
                        for b in chunk
                    )
                )
        finally:
            await conn.close()

    def pending(self) -> int:
        """Messages not yet acknowledged by anyone: on NATS, what the stream's consumers have
        not acknowledged (pending plus outstanding, summed); on RabbitMQ, the queue's ready
        messages (unacknowledged ones return when their channel closes)."""
        return run(self._pending())

    async def _pending(self) -> int:
        if self.kind == "nats":
            nc = await _nats()
            try:
                js = nc.jetstream()
                infos = await js.consumers_info(self.name)
                if not infos:
                    return (await js.stream_info(self.name)).state.messages
                return sum(i.num_pending + i.num_ack_pending for i in infos)
            finally:
                await nc.close()
        conn = await aio_pika.connect(**RABBIT)
        try:
            queue = await (await conn.channel()).declare_queue(self.name, passive=True)
            return int(queue.declaration_result.message_count)
        finally:
            await conn.close()


def _chunks(bodies: Sequence[bytes], size: int = 1000) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(bodies), size):
        yield bodies[start : start + size]


async def _nats() -> Client:
    nc = Client()
    await nc.connect(NATS_URL, allow_reconnect=False)
    return nc


async def create(kind: str, name: str) -> None:
    if kind == "nats":
        nc = await _nats()
        try:
            await nc.jetstream().add_stream(name=name, subjects=[f"{name}.>"])
        finally:
            await nc.close()
        return
    conn = await aio_pika.connect(**RABBIT)
    try:
        await (await conn.channel()).declare_queue(name, durable=True)
    finally:
        await conn.close()


async def delete(kind: str, name: str) -> None:
    if kind == "nats":
        nc = await _nats()
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


def connection_for(kind: str, name: str, connection_name: str = "events") -> Connection:
    if kind == "nats":
        options: dict[str, Any] = {"servers": [NATS_URL], "stream": name}
        return Connection(PROJECT, connection_name, "nats", options)
    options = {"host": "127.0.0.1", "port": 5672, "queue": name, "user": "guest"}
    return Connection(PROJECT, connection_name, "rabbitmq", options, {"password": "RABBIT_PW"})


@contextmanager
def broker(kind: str) -> Iterator[Broker]:
    require_service(4222, "NATS") if kind == "nats" else require_service(5672, "RabbitMQ")
    name = f"h4_{uuid.uuid4().hex[:12]}"
    if kind == "nats":
        name = name.upper()
    run(create(kind, name))
    try:
        credentials = Credentials({"password": "guest"} if kind == "rabbitmq" else {})
        yield Broker(kind, name, connection_for(kind, name), credentials)
    finally:
        run(delete(kind, name))
