"""Adaptive batching: group concurrent single requests into calls of the batch function.

A request waits at most ``max_wait_s`` after the *first* request of its group arrived, or less
when the group fills up to ``max_size``: a lone request is never held longer than the wait. When
every worker slot is busy, requests keep queueing and the next free slot takes up to ``max_size``
of them at once, so batches grow with the load by themselves (hence *adaptive*): at low load the
cost is at most the wait, at high load the wait is spent anyway waiting for a slot.

The dispatcher is one asyncio task; a batch holds one slot of the replica's concurrency
semaphore for the whole call, the same slots single calls use.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher", "Pending"]


@dataclass(slots=True)
class Pending:
    """One queued request: its input, when it arrived (``perf_counter``) and its answer's future."""

    item: Any
    arrived: float
    future: asyncio.Future[bytes] = field(repr=False)
    uuid: str | None = None  # the prediction's uuid from the gateway (None: minted in the replica)


RunBatch = Callable[[Sequence[Pending]], Awaitable[list[bytes]]]


class Batcher:
    """Queue single requests, hand groups of them to ``run`` (which answers each one in order)."""

    def __init__(
        self, run: RunBatch, slots: asyncio.Semaphore, max_size: int, max_wait_s: float
    ) -> None:
        self._run = run
        self._slots = slots
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._pending: deque[Pending] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._dispatch(), name="batcher")

    async def stop(self) -> None:
        """Stop the dispatcher; batches already running finish first."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, item: Any, arrived: float, uuid: str | None = None) -> bytes:
        """Queue ``item`` and wait for its answer."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.append(Pending(item, arrived, future, uuid))
        self._arrived.set()
        return await future

    async def _dispatch(self) -> None:
        pending = self._pending
        while True:
            while not pending:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = pending[0].arrived + self.max_wait_s
            while len(pending) < self.max_size:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            await self._slots.acquire()
            # Requests that arrived while waiting for the slot join this batch.
            batch = [pending.popleft() for _ in range(min(len(pending), self.max_size))]
            task = asyncio.get_running_loop().create_task(self._call(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _call(self, batch: list[Pending]) -> None:
        try:
            answers = await self._run(batch)
        except BaseException as exc:  # a bug of ours, not of user code (that is answered)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for p, answer in zip(batch, answers, strict=True):
                if not p.future.done():
                    p.future.set_result(answer)
        finally:
            self._slots.release()
