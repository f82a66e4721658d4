"""Event streams that carry ground truth: NATS JetStream and RabbitMQ.

``probe`` connects and says how many messages the stream (or queue) holds, or exactly why not.
``open_consumer`` returns a ``Consumer`` that pulls messages in batches (a durable JetStream pull
consumer; a RabbitMQ queue consumer with a prefetch window) and hands each batch to a callback
that stores it, acknowledging a message only once that callback returned: at-least-once, so a
consumer that stops (or a process that dies) between a fetch and the store loses nothing, the
broker hands the messages out again. A message body is a JSON object; ``convert`` turns one into
what the callback stores. A message that is not a JSON object, or that ``convert`` refuses (no
uuid, no label), is not redelivered forever: it is terminated (NATS) or rejected without
requeue (RabbitMQ; to its dead-letter exchange if the queue has one), counted, and kept as a
sample naming the connection, the message's place (stream sequence or delivery tag) and why.

Connection options (``specs.connection``): nats ``servers``, ``stream``, ``subject`` (a filter
within the stream), ``durable`` (the consumer name's prefix, default ``modelyard``); secrets
``user``/``password`` or ``token``. rabbitmq ``host``, ``port``, ``vhost``, ``queue``, ``user``
(default ``guest``), ``ssl``; secret ``password``. No message names a credential's value.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.connectors._failures import classify, failure
from modelyard.connectors.base import Connection, ConnectorError, Credentials, Probe
from modelyard.errors import InvalidInput

__all__ = [
    "ACK_WAIT_S",
    "DEFAULT_BATCH",
    "BadMessage",
    "Consumer",
    "ConsumerStats",
    "consumer_name",
    "open_consumer",
    "probe",
    "probe_async",
]

DEFAULT_BATCH = 2000  # up to this many per fetch and per store call (PostgreSQL: 2.5x 500's rate)
ACK_WAIT_S = 30.0  # a fetched message not acknowledged within this is handed out again (NATS)
CONNECT_TIMEOUT_S = 5.0
FETCH_WAIT_S = 1.0  # longest wait for a first message: how soon a stop is noticed
MAX_BAD_SAMPLES = 5
SAMPLE_CHARS = 200
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")

Convert = Callable[[Mapping[str, Any], str], Any]
Store = Callable[[list[Any]], Awaitable[Any] | Any]


@dataclass(frozen=True)
class BadMessage:
    """A message that was refused: where it was (``ref``), why, and its body's beginning."""

    ref: str
    reason: str
    sample: str

    def line(self) -> str:
        return f"{self.ref}: {self.reason} (body {self.sample!r})"


@dataclass
class ConsumerStats:
    """What a consumer did since ``take`` last emptied it."""

    received: int = 0
    acked: int = 0  # stored (or refused by the store as unknown) and acknowledged
    redelivered: int = 0  # of those received, how many the broker had handed out before
    bad: int = 0
    bad_sample: list[BadMessage] = field(default_factory=list)
    position: str | None = None  # the last acknowledged message's place

    def take(self) -> ConsumerStats:
        """A copy of these counts, which start again from zero (``position`` stays)."""
        taken = ConsumerStats(
            self.received,
            self.acked,
            self.redelivered,
            self.bad,
            list(self.bad_sample),
            self.position,
        )
        self.received = self.acked = self.redelivered = self.bad = 0
        self.bad_sample = []
        return taken


@dataclass(frozen=True)
class _Raw:
    body: bytes
    ref: str
    redelivered: bool
    handle: Any  # the driver's message


def consumer_name(prefix: str, monitor: str) -> str:
    """The durable consumer of ``monitor``: ``<prefix>-<monitor>`` with the characters NATS
    refuses in a name (``.``, ``*``, ``>``, spaces) as ``_``."""
    return _NAME_CHARS.sub("_", f"{prefix}-{monitor}")[:200]


def _decode(raw: _Raw, convert: Convert) -> Any:
    try:
        body = orjson.loads(raw.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidInput(f"a JSON {type(body).__name__}, not an object")
    return convert(body, raw.ref)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Consumer(abc.ABC):
    """Pulls batches from one stream or queue (see the module docstring). ``open`` once,
    ``run`` until ``stop`` is set (the batch in flight is stored and acknowledged first), then
    ``close``; or ``fetch`` and ``handle`` one batch at a time."""

    def __init__(self, connection: Connection, credentials: Credentials, name: str, batch: int):
        if batch < 1:
            raise InvalidInput(f"batch={batch!r} must be at least 1")
        self.connection = connection
        self.credentials = credentials
        self.name = name
        self.batch = batch
        self.stats = ConsumerStats()

    def _failure(self, what: str | None, exc: BaseException | str | None = None) -> ConnectorError:
        return failure(self.connection, self.credentials, what, exc)

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and find the stream (or queue); ConnectorError naming what failed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; what was fetched and not acknowledged goes back to the broker."""

    @abc.abstractmethod
    async def fetch(self, wait_s: float = FETCH_WAIT_S) -> list[_Raw]:
        """Up to ``batch`` messages, waiting at most ``wait_s`` for the first ([] if none)."""

    @abc.abstractmethod
    async def _ack(self, raws: list[_Raw]) -> None: ...

    @abc.abstractmethod
    async def _refuse(self, raw: _Raw) -> None:
        """Never deliver ``raw`` again (terminate / reject without requeue)."""

    @abc.abstractmethod
    async def _release(self, raws: list[_Raw]) -> None:
        """Hand ``raws`` back now, to be delivered again (the store failed)."""

    async def run(self, convert: Convert, store: Store, stop: asyncio.Event) -> None:
        """Fetch, store, acknowledge, until ``stop`` is set; a store that fails hands its
        batch back and the error propagates."""
        while not stop.is_set():
            raws = await self.fetch()
            if raws:
                await self.handle(raws, convert, store)

    async def handle(self, raws: list[_Raw], convert: Convert, store: Store) -> None:
        """One batch: refuse the bad messages, ``store`` the items of the others, acknowledge
        them. A store that raises InvalidInput is tried item by item (the items it refuses
        are refused, the rest stored); any other error hands the batch back and propagates."""
        self.stats.received += len(raws)
        self.stats.redelivered += sum(r.redelivered for r in raws)
        good: list[_Raw] = []
        items: list[Any] = []
        for raw in raws:
            try:
                items.append(_decode(raw, convert))
            except InvalidInput as exc:
                await self._bad(raw, exc.message)
            else:
                good.append(raw)
        if not good:
            return
        try:
            try:
                await _maybe_await(store(items))
            except InvalidInput:
                if len(items) == 1:
                    raise
                good = await self._one_by_one(good, items, store)
        except InvalidInput as exc:
            await self._bad(good[0], exc.message)
            return
        except BaseException:
            await asyncio.shield(self._release(good))
            raise
        if good:
            await self._ack(good)
            self.stats.acked += len(good)
            self.stats.position = good[-1].ref

    async def _one_by_one(self, good: list[_Raw], items: list[Any], store: Store) -> list[_Raw]:
        stored: list[_Raw] = []
        for raw, item in zip(good, items, strict=True):
            try:
                await _maybe_await(store([item]))
            except InvalidInput as exc:
                await self._bad(raw, exc.message)
            except BaseException:
                await asyncio.shield(self._release([r for r in good if r not in stored]))
                raise
            else:
                stored.append(raw)
        return stored

    async def _bad(self, raw: _Raw, reason: str) -> None:
        await self._refuse(raw)
        self.stats.bad += 1
        if len(self.stats.bad_sample) < MAX_BAD_SAMPLES:
            sample = raw.body[:SAMPLE_CHARS].decode("utf-8", "replace")
            self.stats.bad_sample.append(BadMessage(raw.ref, reason, sample))


# -- NATS JetStream ----------------------------------------------------------------------------
def _servers(connection: Connection) -> list[str]:
    servers = connection.options.get("servers") or ["nats://127.0.0.1:4222"]
    return [servers] if isinstance(servers, str) else [str(s) for s in servers]


class NatsConsumer(Consumer):
    """A durable pull consumer ``name`` on the connection's ``stream`` (filtered by
    ``subject`` when set), explicit acks, redelivery after ``ack_wait_s``."""

    def __init__(self, connection: Connection, credentials: Credentials, name: str, batch: int,
                 ack_wait_s: float = ACK_WAIT_S) -> None:  # fmt: skip
        super().__init__(connection, credentials, name, batch)
        self.ack_wait_s = ack_wait_s
        self.stream = str(connection.options.get("stream", ""))
        self._nc: Any = None
        self._sub: Any = None

    async def open(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig
        from nats.js.errors import BadRequestError

        self._nc = await _nats_connect(self.connection, self.credentials)
        js = self._nc.jetstream(timeout=CONNECT_TIMEOUT_S)
        await _stream_info(self, js)
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_ack_pending=max(1000, 4 * self.batch),
            filter_subject=self.connection.options.get("subject") or None,
        )
        # One that exists with other settings keeps its place and is used as it is.
        with contextlib.suppress(BadRequestError):
            await js.add_consumer(self.stream, config)
        self._sub = await js.pull_subscribe_bind(durable=self.name, stream=self.stream)

    async def close(self) -> None:
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None and not nc.is_closed:
            # Closing anyway: what was not acknowledged is handed out again.
            with contextlib.suppress(Exception):
                await nc.flush(timeout=CONNECT_TIMEOUT_S)
            await nc.close()

    async def fetch(self, wait_s: float = FETCH_WAIT_S) -> list[_Raw]:
        import nats.errors

        try:
            msgs = await self._sub.fetch(self.batch, timeout=wait_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except nats.errors.Error as exc:
            raise self._failure("reading the stream failed", exc) from None
        out = []
        for msg in msgs:
            meta = msg.metadata
            ref = f"stream {self.stream!r} sequence {meta.sequence.stream}"
            out.append(_Raw(msg.data, ref, meta.num_delivered > 1, msg))
        return out

    async def _ack(self, raws: list[_Raw]) -> None:
        for raw in raws:
            await raw.handle.ack()
        await self._nc.flush(timeout=CONNECT_TIMEOUT_S)  # the acks reached the server

    async def _refuse(self, raw: _Raw) -> None:
        await raw.handle.term()

    async def _release(self, raws: list[_Raw]) -> None:
        if self._nc is None or self._nc.is_closed:
            return  # handed out again after ack_wait
        for raw in raws:
            await raw.handle.nak()


async def _nats_connect(connection: Connection, credentials: Credentials) -> Any:
    from nats.aio.client import Client

    errors: list[BaseException] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    options: dict[str, Any] = {}
    for option in ("user", "password", "token"):
        if credentials.get(option):
            options[option] = credentials.get(option)
    nc = Client()
    try:
        await asyncio.wait_for(
            nc.connect(
                _servers(connection),
                connect_timeout=int(CONNECT_TIMEOUT_S),
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,  # type: ignore[arg-type]  # seconds, a float works
                error_cb=on_error,
                **options,
            ),
            CONNECT_TIMEOUT_S * 2,
        )
    except Exception as exc:
        await nc.close()
        # An authorization violation may be followed by a reset on the retry: it says more.
        said = [e for e in errors if _nats_what(e) == "bad credentials"] or errors or [exc]
        cause = said[-1]
        raise failure(connection, credentials, _nats_what(cause), cause) from None
    return nc


def _nats_what(exc: BaseException) -> str | None:
    text = f"{exc!r} {exc}"
    if "Authorization Violation" in text or "authentication" in text.lower():
        return "bad credentials"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return classify(text)


async def _stream_info(consumer: NatsConsumer, js: Any) -> Any:
    from nats.js.errors import NotFoundError

    subject = consumer.connection.options.get("subject") or None
    try:
        return await js.stream_info(consumer.stream, subjects_filter=subject)
    except NotFoundError:
        raise consumer._failure(
            f"stream {consumer.stream!r} does not exist (create it, or fix the stream option)"
        ) from None
    except Exception as exc:
        raise consumer._failure("reading the stream's info failed", exc) from None


# -- RabbitMQ ----------------------------------------------------------------------------------
class RabbitConsumer(Consumer):
    """A consumer of the connection's ``queue`` (passively declared: it must exist) with a
    prefetch window of two batches; ``multiple`` acks, rejects without requeue."""

    def __init__(self, connection: Connection, credentials: Credentials, name: str, batch: int):
        super().__init__(connection, credentials, name, batch)
        self.queue_name = str(connection.options.get("queue", ""))
        self._conn: Any = None
        self._queue: Any = None
        self._tag: str | None = None
        self._arrived: asyncio.Queue[Any] = asyncio.Queue()

    async def open(self) -> None:
        self._conn = await _rabbit_connect(self.connection, self.credentials)
        channel = await self._conn.channel()
        await channel.set_qos(prefetch_count=2 * self.batch)
        self._queue = await _declare(self, channel)
        self._tag = await self._queue.consume(self._arrived.put, no_ack=False)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed:
            await conn.close()  # unacknowledged deliveries go back to the queue

    async def fetch(self, wait_s: float = FETCH_WAIT_S) -> list[_Raw]:
        try:
            first = await asyncio.wait_for(self._arrived.get(), wait_s)
        except TimeoutError:
            if self._conn is None or self._conn.is_closed:
                raise self._failure("the connection closed") from None
            return []
        msgs = [first]
        while len(msgs) < self.batch and not self._arrived.empty():
            msgs.append(self._arrived.get_nowait())
        return [
            _Raw(
                m.body,
                f"queue {self.queue_name!r} delivery tag {m.delivery_tag}",
                bool(m.redelivered),
                m,
            )
            for m in msgs
        ]

    async def _ack(self, raws: list[_Raw]) -> None:
        # Batches are handled one after another in delivery order, so every delivery up to the
        # last one here is in this batch or already settled.
        await raws[-1].handle.ack(multiple=True)

    async def _refuse(self, raw: _Raw) -> None:
        await raw.handle.reject(requeue=False)

    async def _release(self, raws: list[_Raw]) -> None:
        if self._conn is None or self._conn.is_closed:
            return  # the broker requeues them when the channel closes
        for raw in raws:
            await raw.handle.nack(requeue=True)


async def _rabbit_connect(connection: Connection, credentials: Credentials) -> Any:
    import aio_pika
    import aiormq.exceptions

    options = connection.options
    try:
        return await aio_pika.connect(
            host=str(options.get("host", "127.0.0.1")),
            port=int(options.get("port", 5671 if options.get("ssl") else 5672)),
            login=str(options.get("user", "guest")),
            password=credentials.get("password") or "guest",
            virtualhost=str(options.get("vhost", "/")),
            ssl=bool(options.get("ssl", False)),
            timeout=CONNECT_TIMEOUT_S,
        )
    except aiormq.exceptions.ProbableAuthenticationError as exc:
        raise failure(connection, credentials, "bad credentials", exc) from None
    except (aiormq.exceptions.InvalidFrameError, aiormq.exceptions.ConnectionClosed):
        vhost = options.get("vhost", "/")
        what = f"the broker closed the connection (does vhost {vhost!r} exist, may user use it?)"
        raise failure(connection, credentials, what) from None
    except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
        raise failure(connection, credentials, None, exc) from None


async def _declare(consumer: RabbitConsumer, channel: Any) -> Any:
    import aiormq.exceptions

    try:
        return await channel.declare_queue(consumer.queue_name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise consumer._failure(
            f"queue {consumer.queue_name!r} does not exist (declare it, or fix the queue option)"
        ) from None
    except aiormq.exceptions.AMQPError as exc:
        raise consumer._failure(f"queue {consumer.queue_name!r} cannot be used", exc) from None


# -- entry points ------------------------------------------------------------------------------
def open_consumer(
    connection: Connection,
    credentials: Credentials,
    monitor: str,
    *,
    batch: int = DEFAULT_BATCH,
    ack_wait_s: float = ACK_WAIT_S,
) -> Consumer:
    """A (not yet opened) consumer of ``connection`` for ``monitor``: on NATS, the durable
    consumer ``consumer_name(durable option or 'modelyard', monitor)``."""
    if connection.kind == "nats":
        prefix = str(connection.options.get("durable") or "modelyard")
        name = consumer_name(prefix, monitor)
        return NatsConsumer(connection, credentials, name, batch, ack_wait_s)
    if connection.kind == "rabbitmq":
        return RabbitConsumer(connection, credentials, monitor, batch)
    raise InvalidInput(
        f"connection {connection.name!r} is a {connection.kind} connection, not a stream; "
        "streams are nats or rabbitmq connections"
    )


async def probe_async(connection: Connection, credentials: Credentials) -> Probe:
    """Connect, find the stream or queue, say how many messages it holds; ConnectorError
    naming the connection and what failed."""
    consumer = open_consumer(connection, credentials, "probe")
    if isinstance(consumer, NatsConsumer):
        nc = await _nats_connect(connection, credentials)
        try:
            info = await _stream_info(consumer, nc.jetstream(timeout=CONNECT_TIMEOUT_S))
        finally:
            await nc.close()
        subject = connection.options.get("subject")
        on_subject = ""
        if subject:
            count = sum((info.state.subjects or {}).values())
            on_subject = f", {count} on subject {subject!r}"
        return Probe(
            True,
            f"NATS {nc.connected_server_version}: stream {consumer.stream!r} holds "
            f"{info.state.messages} messages{on_subject}",
        )
    assert isinstance(consumer, RabbitConsumer)
    conn = await _rabbit_connect(connection, credentials)
    try:
        props = conn.transport.connection.server_properties
        queue = await _declare(consumer, await conn.channel())
        result = queue.declaration_result
    finally:
        await conn.close()
    return Probe(
        True,
        f"RabbitMQ {props.get('version', '?')}: queue {consumer.queue_name!r} holds "
        f"{result.message_count} messages ({result.consumer_count} consumers)",
    )


def probe(connection: Connection, credentials: Credentials) -> Probe:
    """``probe_async`` from synchronous code (a thread of its own when this thread runs an
    event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(probe_async(connection, credentials))
    found: list[Probe | BaseException] = []

    def in_thread() -> None:
        try:
            found.append(asyncio.run(probe_async(connection, credentials)))
        except BaseException as exc:  # handed to the caller's thread
            found.append(exc)

    thread = threading.Thread(target=in_thread, name="modelyard-stream-probe")
    thread.start()
    thread.join()
    if isinstance(found[0], BaseException):
        raise found[0]
    return found[0]
