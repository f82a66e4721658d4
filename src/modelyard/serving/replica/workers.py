"""Where user code runs: a thread pool behind a semaphore, so the event loop stays free.

At most ``concurrency`` calls of user code run at once (an ``asyncio.Semaphore`` in front of
``loop.run_in_executor``; the pool has exactly that many threads). The loop itself only parses
requests and writes answers, so ``/healthz`` answers while every worker is busy. ``async def`` user
functions are awaited on the loop, under the same semaphore.

With a batch function, single requests go through the ``Batcher`` and each group is one call of
the batch function in the pool; ``invoke_batch`` calls the batch function once with the whole list
(or, without one, the single function once per item, concurrently up to the limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelyard.serving.replica.batching import Batcher, Pending
from modelyard.serving.replica.user_code import UserCode, run_async, run_sync

__all__ = ["Workers"]


class Workers:
    def __init__(
        self,
        code: UserCode,
        concurrency: int,
        max_batch_size: int = 32,
        max_batch_wait_s: float = 0.005,
    ) -> None:
        self.code = code
        self.concurrency = concurrency
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="user-code")
        self._async = inspect.iscoroutinefunction(code.function)
        self._async_batch = inspect.iscoroutinefunction(code.batch_function)
        self._max_batch_size = max_batch_size
        self._max_batch_wait_s = max_batch_wait_s
        # Created in start(): asyncio primitives belong to the loop that serves.
        self._slots: asyncio.Semaphore | None = None
        self._batcher: Batcher | None = None

    def start(self) -> None:
        self._slots = asyncio.Semaphore(self.concurrency)
        if self.code.batch_function is not None:
            self._batcher = Batcher(
                self._run_batch, self._slots, self._max_batch_size, self._max_batch_wait_s
            )
            self._batcher.start()

    def start_threads(self) -> None:
        """Start every worker thread now rather than on the first calls. Each thread maps its
        stack when it starts; a kernel memory limit set after this counts the stacks as memory
        the replica already had, not as growth (``modelyard.runtime.memlimit``)."""
        barrier = threading.Barrier(self.concurrency)
        waits = [self._executor.submit(barrier.wait, 10.0) for _ in range(self.concurrency)]
        for wait in waits:
            with contextlib.suppress(threading.BrokenBarrierError):
                wait.result()

    async def stop(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()
        # Requests in flight have been answered by now (the server drains before the lifespan
        # shutdown); a call stuck in user code is not waited for.
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            raise RuntimeError("Workers.start() was not called on the serving loop")
        return self._slots

    async def invoke(self, item: Any, arrived: float) -> bytes:
        """One request's answer; grouped with others when there is a batch function."""
        if self._batcher is not None:
            return await self._batcher.submit(item, arrived)
        async with self.slots:
            return await self._single(item, arrived)

    async def invoke_batch(self, items: Sequence[Any], arrived: float) -> list[bytes]:
        """One answer per item: one call of the batch function, or the function per item."""
        if not items:
            return []
        if self.code.batch_function is not None:
            async with self.slots:
                return await self._batch(items, [arrived] * len(items))

        async def one(item: Any) -> bytes:
            async with self.slots:
                return await self._single(item, arrived)

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def _single(self, item: Any, arrived: float) -> bytes:
        code = self.code
        if self._async:
            outcome = await run_async(code.function, item)
            return code.single_answer(item, outcome, arrived)

        def work() -> bytes:
            return code.single_answer(item, run_sync(code.function, item), arrived)

        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def _batch(self, items: Sequence[Any], arrivals: Sequence[float]) -> list[bytes]:
        code = self.code
        function = code.batch_function
        assert function is not None
        arg = list(items)
        if self._async_batch:
            outcome = await run_async(function, arg)
            return code.batch_answers(items, outcome, arrivals)

        def work() -> list[bytes]:
            return code.batch_answers(items, run_sync(function, arg), arrivals)

        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def _run_batch(self, batch: Sequence[Pending]) -> list[bytes]:
        """The batcher's runner: it already holds a slot."""
        return await self._batch([p.item for p in batch], [p.arrived for p in batch])
