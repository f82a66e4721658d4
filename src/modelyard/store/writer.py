"""Buffered ingest of prediction records: the predict path enqueues, one thread writes batches.

What returns only once durable, and what buffers:

- ``BufferedWriter.submit(prediction)`` only *enqueues* (a lock-protected ``deque.append``, about a
  microsecond; with a journal, the record is first copied into it, about another microsecond).
  The record is written later by the writer's background thread, in batches of up to
  ``max_batch`` records, at least every ``flush_interval_ms``.
- ``BufferedWriter.flush()`` returns once everything submitted before the call is committed, and
  re-raises in the caller any write error the background thread met (``close()`` flushes too).
- ``MetricsStore.write_predictions``, ``add_delayed`` and ``add_aggregate`` write directly: they
  return only once their transaction has committed.

What a crash can lose: without a journal, records submitted but not yet flushed, at most about
``flush_interval_ms`` of traffic (or ``max_batch`` records) when the process dies without running
its exit hooks (SIGKILL, power loss, ``os._exit``). At a normal interpreter exit an ``atexit``
hook flushes. With a journal (``journal=Journal(folder)``, what the server uses), ``submit``
appends the record to it before returning, so a crash of the process loses nothing and a crash of
the machine at most the journal's fsync interval; ``submit`` then raises ``JournalFull`` (and
enqueues nothing) when the journal may not grow. After each batch the writer tells the journal
how many records are settled (written, or refused for good), and the journal drops them; the next
start replays the rest (``Journal.replay_into``). See ``modelyard.store.journal``.

When a batch fails: if the store is unavailable (locked, unreachable; over HTTP also a server
that is overloaded, times out or does not answer) the batch goes back to the head of the queue
and is retried with back-off, and ``flush`` raises the error so the caller knows records are
waiting. If the batch itself is at fault (a duplicate uuid, an oversized record, a
record outside the key's scope), it is split in halves until the bad records are isolated; those
are dropped, every other record is written, and the next ``flush`` raises the error that named
them. A refusal that is no record's fault and will not pass on retry (``Unauthorized``: the key
is wrong) drops the whole batch at once and ``flush`` raises it.

Where batches go is a ``PredictionSink``: any object with ``write_predictions(batch)`` that
returns once the records are durable. A ``MetricsStore`` is one (the embedded backend and the
server); the SDK's remote backend gives one that POSTs to a server
(``modelyard.tracking.remote.HttpSink``).
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from modelyard import settings
from modelyard.backoff import Backoff
from modelyard.errors import (
    GatewayTimeout,
    InvalidInput,
    ModelyardError,
    Overloaded,
    StoreUnavailable,
    Unauthorized,
    Unavailable,
)
from modelyard.store.base import Prediction
from modelyard.store.journal import Journal

__all__ = ["BufferedWriter", "PredictionSink"]

# Failures that say "not now" rather than "not these records": the batch is retried with back-off.
# (Unavailable covers ServerUnreachable.)
_TRY_LATER: tuple[type[ModelyardError], ...] = (
    StoreUnavailable,
    Unavailable,
    Overloaded,
    GatewayTimeout,
)
# Failures that are no record's fault and no retry would pass: the whole batch is dropped at once.
_REFUSED_WHOLE = (Unauthorized,)

# Waits while the store is unavailable: 50 ms doubling to 1 s (the flush interval if longer).
_RETRY_BACKOFF = Backoff(base_s=0.05, cap_s=1.0, jitter=0.0)
_MAX_ERRORS = 100


class PredictionSink(Protocol):
    """Where a ``BufferedWriter`` writes. ``write_predictions`` returns once the records are
    durable; it raises StoreUnavailable (or Unavailable, Overloaded, GatewayTimeout) when it could
    not write now, and any other error when it refused the records."""

    def write_predictions(self, predictions: Sequence[Prediction]) -> None: ...


class _Retry(Exception):
    """The sink could not write now; ``remaining`` records were not written and must be retried."""

    def __init__(self, remaining: list[Prediction], error: ModelyardError) -> None:
        super().__init__(str(error))
        self.remaining = remaining
        self.error = error


class BufferedWriter:
    """Batches ``submit``-ted predictions into ``store.write_predictions`` on a daemon thread
    (``store`` is any ``PredictionSink``: a MetricsStore, or the remote backend's HTTP sink)."""

    def __init__(
        self,
        store: PredictionSink,
        flush_interval_ms: int | None = None,
        max_batch: int = 10_000,
        *,
        journal: Journal | None = None,
    ) -> None:
        interval = (
            settings.get("flush_interval") if flush_interval_ms is None else flush_interval_ms
        )
        if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
            raise InvalidInput(
                f"flush_interval_ms={interval!r} must be a positive number of milliseconds"
            )
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidInput(f"max_batch={max_batch!r} must be a positive integer")
        self.store = store
        self.flush_interval_ms = interval
        self.max_batch = max_batch
        self.journal = journal
        self._queue: deque[Prediction] = deque()
        self._lock = threading.Lock()  # guards _queue appends together with _submitted
        self._submitted = 0
        self._done = 0  # records written or dropped, in submit order
        self._done_cond = threading.Condition()
        self._errors: list[ModelyardError] = []
        self._wake = threading.Event()
        self._closing = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="modelyard-writer", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # -- the predict path -----------------------------------------------------------------------
    def submit(self, prediction: Prediction) -> None:
        """Enqueue one record (journal it first, if there is a journal); never waits on the
        database. Raises ``JournalFull`` when the journal refuses it: then nothing is queued."""
        if type(prediction) is not Prediction:
            raise InvalidInput(f"{prediction!r} is not a Prediction; submit takes a Prediction")
        self._enqueue((prediction,))

    def submit_many(self, predictions: Sequence[Prediction]) -> None:
        """Enqueue several records as one: all of them, or (raising) none."""
        for prediction in predictions:
            if type(prediction) is not Prediction:
                raise InvalidInput(
                    f"{prediction!r} is not a Prediction; submit_many takes Predictions"
                )
        self._enqueue(predictions)

    def _enqueue(self, predictions: Sequence[Prediction]) -> None:
        with self._lock:
            if self._closing:
                raise StoreUnavailable("this BufferedWriter is closed; open a new one to submit")
            if self.journal is not None:  # under the lock: the journal's order is the queue's
                self.journal.append_many(predictions)
            self._queue.extend(predictions)
            self._submitted += len(predictions)
            full = len(self._queue) >= self.max_batch
        if full:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Records submitted but not yet written (or dropped)."""
        with self._lock:
            return self._submitted - self._done

    # -- durability -----------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Return once every record submitted before this call is durable.

        Raises the first write error not yet reported (see the module docstring), or
        ``StoreUnavailable`` if ``timeout`` seconds pass first.
        """
        with self._lock:
            target = self._submitted
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._done_cond:
            while self._done < target and not self._errors:
                if not self._thread.is_alive():
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._done_cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            if self._errors:
                raise self._errors.pop(0)
            if self._done < target:
                raise StoreUnavailable(
                    f"flush did not finish within {timeout}s: {target - self._done} records "
                    f"are still waiting to be written to {self.store!r}; retry flush later",
                    pending=target - self._done,
                )

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the background thread and release the exit hook (the store stays open)."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            with self._lock:
                self._closing = True
            self._closed = True
            self._wake.set()
            self._thread.join(timeout)
            atexit.unregister(self._at_exit)

    def __enter__(self) -> BufferedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _at_exit(self) -> None:
        try:
            self.close(timeout=30)
        except Exception as exc:  # at exit there is nobody left to raise to
            if self.journal is not None:
                where = f"they stay in the journal in {self.journal.folder} for the next start"
                print(f"modelyard: records not written at exit ({exc}); {where}", file=sys.stderr)
            else:
                print(f"modelyard: records may be lost at exit: {exc}", file=sys.stderr)

    # -- the background thread ------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while True:
            backoff = _RETRY_BACKOFF.delay(failures) if failures else 0.0
            self._wake.wait(max(self.flush_interval_ms / 1000, backoff))
            self._wake.clear()
            while self._queue:
                batch = self._take()
                try:
                    self._write(batch)
                except _Retry as retry:
                    self._queue.extendleft(reversed(retry.remaining))  # first in line again
                    self._report(retry.error, len(batch) - len(retry.remaining))
                    failures += 1
                    if self._closed:
                        return  # close() gave up waiting; what is left stays unwritten
                    break
                if failures:  # the store answers again: its "not now" errors are moot
                    self._forget_retries()
                failures = 0
                self._report(None, len(batch))
            if self._closed and not self._queue:
                return

    def _take(self) -> list[Prediction]:
        batch: list[Prediction] = []
        popleft = self._queue.popleft
        for _ in range(min(self.max_batch, len(self._queue))):
            batch.append(popleft())
        return batch

    def _write(self, batch: list[Prediction]) -> None:
        """Write ``batch``; isolate and drop records the store refuses (splitting in halves).

        Raises ``_Retry`` with the records not yet written when the store is unavailable.
        """
        try:
            self.store.write_predictions(batch)
        except _TRY_LATER as exc:
            raise _Retry(batch, exc) from exc
        except _REFUSED_WHOLE as exc:
            self._report(exc, 0)  # every record dropped with one error, none retried
            return
        except Exception as exc:
            if len(batch) == 1:
                error = (
                    exc
                    if isinstance(exc, ModelyardError)
                    else ModelyardError(
                        f"writing prediction {batch[0].uuid} failed "
                        f"({exc.__class__.__name__}: {exc}); the record was dropped"
                    )
                )
                self._report(error, 0)
                return
            middle = len(batch) // 2
            try:
                self._write(batch[:middle])
            except _Retry as retry:
                raise _Retry(retry.remaining + batch[middle:], retry.error) from retry.error
            self._write(batch[middle:])

    def _forget_retries(self) -> None:
        """Drop the errors of batches that were retried and have now been written, so a
        ``flush`` (or ``close``) after an outage does not raise what no longer holds; errors
        that dropped records stay."""
        with self._done_cond:
            self._errors = [e for e in self._errors if not isinstance(e, _TRY_LATER)]

    def _report(self, error: ModelyardError | None, done: int) -> None:
        with self._done_cond:
            # Bounded: a store that stays locked must not grow this list without end.
            if error is not None and len(self._errors) < _MAX_ERRORS:
                self._errors.append(error)
            self._done += done
            self._done_cond.notify_all()
            done_total = self._done
        if self.journal is not None and done:
            self.journal.committed(done_total)
