"""Ground truth from event streams, consumed by the server: one consumer per monitor job whose
spec's ``labels:`` names a NATS JetStream or RabbitMQ connection.

A monitor's run reads a table or files at its start (``monitors.labels``); a stream is read as it
flows instead, by the server, so labels are stored within seconds of their publication. The
manager (``LabelStreams``) looks at the registry every ``interval_s`` (the jobs, their spec
files, the connections and the secrets' versions) and keeps one consumer running per enabled
(not paused) monitor job with a stream ``labels:`` source: a new job starts one, a paused or
deleted job (or a spec whose ``labels:`` went elsewhere) stops its consumer, a changed spec,
connection or secret restarts it.

Each message is a JSON object mapped through the spec's column mapping exactly as a table row is
(``LabelsSource.to_metrics``: ``uuid_column`` holds the prediction's uuid, ``columns`` maps
fields to delayed metric keys); ``join`` is refused for streams (it needs a lookup per message
through the caller's own ids: join in the producer, or land the stream in a table). Batches go to
the store in one call (``add_delayed_many``, ``skip_unchanged``: a message delivered again is
harmless) and a message is acknowledged only after that call returned (at-least-once,
``connectors.streams``). A message that is not JSON, or lacks the uuid or a label column, is
refused once and reported, never redelivered forever.

What was consumed is recorded in ``label_imports`` (``registry.labels``), one record per
``record_every_s`` of consumption with anything in it (not one per message): messages read,
matched, unmatched (uuids the store does not know, with a sample), duplicates, and the refused
messages (count and samples naming the stream sequence or delivery tag) in ``error``; a
connection that fails is recorded once per failure and tried again with a growing back-off.
Credentials come from the project's secrets (``registry.secrets``, audited as read for the
monitor). ``stop`` stops fetching, lets the batch in flight be stored and acknowledged, records
the counts, and closes: what was not acknowledged stays with the broker for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.backoff import Backoff
from modelyard.clock import now_ms
from modelyard.connectors.base import STREAM_KINDS, Connection, Credentials
from modelyard.connectors.streams import ACK_WAIT_S, DEFAULT_BATCH, Consumer, open_consumer
from modelyard.errors import InvalidInput, ModelyardError, NotFound
from modelyard.registry import ImportRecord, Registry, read_secrets
from modelyard.specs.labels import LabelsSource
from modelyard.specs.monitor import MonitorSpec
from modelyard.store import MetricsStore

__all__ = ["RECORD_EVERY_S", "RETRY", "LabelStreams", "StreamSource", "stream_sources"]

log = logging.getLogger("modelyard.monitors.label_streams")

RECORD_EVERY_S = 10.0
RETRY = Backoff(base_s=1.0, cap_s=60.0)
SAMPLE = 20


@dataclass(frozen=True)
class StreamSource:
    """One monitor job's stream ``labels:`` source; ``fingerprint`` changes when anything that
    its consumer depends on does (the spec's labels, the connection, its secrets' versions)."""

    job: str
    monitor: str  # the spec's name: the durable consumer's and label_imports' name
    project_crn: str
    labels: LabelsSource
    connection: Connection
    fingerprint: str

    @property
    def tag(self) -> str:
        """The ``source`` of the delayed metrics it stores (as a monitor run's import)."""
        return f"labels:{self.monitor} ({self.connection.name})"


class _Specs:
    """Monitor specs by path, parsed again only when the file changed."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int], MonitorSpec]] = {}

    def get(self, path: Path) -> MonitorSpec:
        try:
            st = path.stat()
        except OSError as exc:
            raise InvalidInput(f"monitor spec {str(path)!r} cannot be read ({exc})") from None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        spec = MonitorSpec.from_yaml(path)
        self._cache[path] = (stamp, spec)
        return spec


def stream_sources(
    registry: Registry, specs: _Specs | None = None
) -> tuple[dict[str, StreamSource], dict[str, tuple[str, str, str, str]]]:
    """(job name -> its stream source) for every enabled monitor job whose ``labels:`` is a
    stream, and (job name -> (monitor, project, connection, problem)) for those that name a
    stream but cannot consume it (a ``join``, a missing connection, a spec that fails to load)."""
    specs = specs or _Specs()
    found: dict[str, StreamSource] = {}
    problems: dict[str, tuple[str, str, str, str]] = {}
    secret_versions: dict[str, dict[str, int]] = {}
    for job in registry.list_jobs():
        if job.monitor is None or job.paused or job.project_crn is None:
            continue
        try:
            spec = specs.get(Path(job.project) / job.monitor)
        except InvalidInput:
            continue  # the monitor's own runs say what is wrong with its spec
        labels: LabelsSource | None = getattr(spec, "labels", None)
        if labels is None:
            continue
        try:
            connection = registry.connections.get(job.project_crn, labels.connection)
        except NotFound as exc:
            problems[job.name] = (spec.name, job.project_crn, labels.connection, exc.message)
            continue
        if connection.kind not in STREAM_KINDS:
            continue
        if labels.join is not None:
            problem = (
                f"labels from stream connection {connection.name!r} must name the uuid field "
                "(labels.uuid_column): 'join' is not supported for streams; join in the "
                "producer, or land the stream in a table"
            )
            problems[job.name] = (spec.name, job.project_crn, connection.name, problem)
            continue
        if job.project_crn not in secret_versions:
            secret_versions[job.project_crn] = {
                s.name: s.updated_ms for s in registry.secrets.list(job.project_crn)
            }
        versions = secret_versions[job.project_crn]
        fingerprint = repr(
            (
                spec.name,
                labels.to_dict(),
                connection.to_dict(),
                sorted((s, versions.get(s)) for s in connection.secrets.values()),
            )
        )
        found[job.name] = StreamSource(
            job.name, spec.name, job.project_crn, labels, connection, fingerprint
        )
    return found, problems


class _Tally:
    """What one consumer did since its last record."""

    def __init__(self) -> None:
        self.started_ms = now_ms()
        self.matched = 0
        self.unmatched = 0
        self.duplicates = 0
        self.sample: list[str] = []

    def stored(self, result: Any) -> None:
        self.matched += result.stored + result.unchanged
        self.duplicates += result.unchanged
        for uuid in result.unknown:
            self.unmatched += 1
            if len(self.sample) < SAMPLE:
                self.sample.append(str(uuid)[:200])


class _Worker:
    """The consumer of one monitor job's stream, restarted with a back-off when it fails."""

    def __init__(self, manager: LabelStreams, source: StreamSource) -> None:
        self.m = manager
        self.source = source
        self.stop = asyncio.Event()
        self.tally = _Tally()
        self.task: asyncio.Task[None] | None = None

    def convert(self, message: Mapping[str, Any], ref: str) -> tuple[str, dict[str, Any]]:
        where = f"connection {self.source.connection.name!r}, {ref}"
        uuid, metrics = self.source.labels.to_metrics(message, where)
        column = self.source.labels.uuid_column
        if not isinstance(uuid, str) or not uuid or "\x00" in uuid or len(uuid) > 200:
            raise InvalidInput(f"{where}: field {column!r} holds {uuid!r:.80}, not a uuid")
        if not metrics:
            raise InvalidInput(f"{where}: every label field is null")
        return uuid, metrics

    async def store(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """One ``add_delayed_many`` call; a label repeated within the batch (the same uuid and
        values: a redelivery, a producer's retry) is stored once and counted a duplicate."""
        unique: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        for uuid, metrics in items:
            unique.setdefault((uuid, repr(sorted(metrics.items()))), (uuid, metrics))
        self.tally.duplicates += len(items) - len(unique)
        self.tally.matched += len(items) - len(unique)
        result = await asyncio.to_thread(
            self.m.store.add_delayed_many, list(unique.values()), self.source.tag,
            skip_unchanged=True,
        )  # fmt: skip
        self.tally.stored(result)

    async def run(self) -> None:
        attempt = 0
        credentials: Credentials | None = None  # read once (audited), kept across retries
        while not self.stop.is_set():
            consumer: Consumer | None = None
            error: str | None = None
            try:
                if credentials is None:
                    credentials = await asyncio.to_thread(self._credentials)
                consumer = open_consumer(
                    self.source.connection,
                    credentials,
                    self.source.monitor,
                    batch=self.m.batch,
                    ack_wait_s=self.m.ack_wait_s,
                )
                await consumer.open()
                attempt = 0
                await self._consume(consumer)
            except ModelyardError as exc:
                error = exc.message
            except Exception as exc:
                log.exception("label stream of monitor %s failed", self.source.monitor)
                error = f"{type(exc).__name__}: {exc}"
            finally:
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.close()
                    await self._record(consumer)
            if error is not None:
                attempt += 1
                delay = RETRY.delay(attempt)
                log.warning(
                    "labels of monitor %s (again in %.0fs): %s", self.source.monitor, delay, error
                )
                await self._record(None, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)

    def _credentials(self) -> Credentials:
        source = self.source
        values = read_secrets(
            self.m.registry,
            source.project_crn,
            source.connection.secrets.values(),
            object=source.monitor,
            for_=f"labels stream of monitor {source.monitor}",
        )
        return Credentials.resolve(source.connection, values.get)

    async def _consume(self, consumer: Consumer) -> None:
        next_record = time.monotonic() + self.m.record_every_s
        while not self.stop.is_set():
            raws = await consumer.fetch()
            if raws:
                await consumer.handle(raws, self.convert, self.store)
            if time.monotonic() >= next_record:
                await self._record(consumer)
                next_record = time.monotonic() + self.m.record_every_s

    async def _record(self, consumer: Consumer | None, error: str | None = None) -> None:
        """One ``label_imports`` record of what happened since the last (nothing: no record)."""
        stats = consumer.stats.take() if consumer is not None else None
        tally, self.tally = self.tally, _Tally()
        if stats is not None and stats.bad:
            samples = "; ".join(b.line() for b in stats.bad_sample)
            error = f"{stats.bad} messages refused (not stored, not redelivered): {samples}"
        if error is None and (stats is None or stats.received == 0):
            return
        record = ImportRecord(
            monitor=self.source.monitor,
            connection=self.source.connection.name,
            started_ms=tally.started_ms,
            finished_ms=now_ms(),
            rows_read=stats.received if stats else 0,
            matched=tally.matched,
            unmatched=tally.unmatched,
            duplicates=tally.duplicates,
            unmatched_sample=tuple(tally.sample),
            watermark_after=stats.position if stats else None,
            error=error,
        )
        if stats is not None and stats.bad:
            log.warning("labels of monitor %s: %s", self.source.monitor, error)
        try:
            await asyncio.to_thread(
                self.m.registry.labels.record, self.source.monitor, self.source.project_crn, record
            )
        except ModelyardError as exc:
            log.warning("recording labels of monitor %s: %s", self.source.monitor, exc)


class LabelStreams:
    """Keeps one consumer per monitor job with a stream ``labels:`` source (module docstring):
    ``start`` the watcher on the running loop, ``tick`` for one look, ``stop`` at shutdown."""

    def __init__(
        self,
        registry: Registry,
        store: MetricsStore,
        *,
        interval_s: float = 2.0,
        record_every_s: float = RECORD_EVERY_S,
        batch: int = DEFAULT_BATCH,
        ack_wait_s: float = ACK_WAIT_S,
    ) -> None:
        self.registry = registry
        self.store = store
        self.interval_s = interval_s
        self.record_every_s = record_every_s
        self.batch = batch
        self.ack_wait_s = ack_wait_s
        self._workers: dict[str, _Worker] = {}
        self._problems: dict[str, str] = {}
        self._specs = _Specs()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._unreachable = False

    def running(self) -> dict[str, str]:
        """Job name -> the connection its consumer reads."""
        return {job: w.source.connection.name for job, w in self._workers.items()}

    def start(self) -> None:
        """Look now and then every ``interval_s`` (on the running event loop)."""
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching (a look under way ends first) and stop every consumer (each
        finishes, stores and acknowledges its batch in flight)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            await task
        workers = list(self._workers.values())
        self._workers.clear()
        await asyncio.gather(*(self._stop_worker(w) for w in workers))

    async def _watch(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except ModelyardError as exc:
                if not self._unreachable:
                    log.warning("watching monitors for label streams: %s", exc)
                self._unreachable = True
            except Exception:
                log.exception("watching monitors for label streams failed")
            else:
                self._unreachable = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)

    async def tick(self) -> dict[str, str]:
        """One look: start, restart and stop consumers; return ``running()``."""
        wanted, problems = await asyncio.to_thread(stream_sources, self.registry, self._specs)
        for job, worker in list(self._workers.items()):
            source = wanted.get(job)
            if source is None or source.fingerprint != worker.source.fingerprint:
                del self._workers[job]
                await self._stop_worker(worker)
        for job, source in wanted.items():
            if job not in self._workers:
                worker = _Worker(self, source)
                worker.task = asyncio.get_running_loop().create_task(worker.run())
                self._workers[job] = worker
        await self._report(problems)
        return self.running()

    async def _report(self, problems: dict[str, tuple[str, str, str, str]]) -> None:
        """Record each new problem once (in label_imports and the log)."""
        for job, (monitor, project, connection, problem) in problems.items():
            if self._problems.get(job) == problem:
                continue
            log.warning("labels of monitor %s (job %s): %s", monitor, job, problem)
            now = now_ms()
            record = ImportRecord(monitor, connection, now, now, error=problem)
            with contextlib.suppress(ModelyardError):
                await asyncio.to_thread(self.registry.labels.record, monitor, project, record)
        self._problems = {job: p[3] for job, p in problems.items()}

    @staticmethod
    async def _stop_worker(worker: _Worker) -> None:
        worker.stop.set()
        if worker.task is not None:
            await worker.task
