"""Where user code runs: on the event loop when it is fast, else in a thread pool; at most
``concurrency`` calls at once either way.

At most ``concurrency`` calls of user code run at once: every call, wherever it runs, holds one
slot of an ``asyncio.Semaphore`` of that size, so ``--concurrency 1`` serialises every call of
code that is not thread-safe. ``async def`` user functions are awaited on the loop, under the same
semaphore.

Where a call of a plain function runs is decided per call (``Placement``), by measurement:

- **In the pool** first, as it always did: ``concurrency`` worker threads. Each call there is
  timed: its wall time and the CPU time of its thread.
- **On the loop** ("inline") once ``INLINE_AFTER`` (16) calls in a row in the pool were fast: at
  most ``INLINE_MAX_S`` (2 ms) of CPU and ``INLINE_TRY_S`` (100 ms) of wall time (a call that
  waits longer is never tried on the loop; a busy machine stretches wall times). The call then
  runs right where the request was parsed, with no hand-off to a worker thread and back: that
  hand-off costs two thread switches and two GIL hand-overs per call, more than a fast model's own
  time (``docs/replica.md``). The loop is busy no longer than it is parsing a request anyway, so
  ``/healthz`` still answers within milliseconds. The event loop is hidden from the call, as in a
  worker thread: ``asyncio.run`` inside user code works and ``asyncio.get_running_loop`` raises.
- **Back in the pool** when calls on the loop are slow by their own doing: more than
  ``INLINE_MAX_S`` of CPU, or the call blocked (a voluntary context switch: ``time.sleep``, I/O,
  a lock), ``INLINE_STRIKES`` (3) calls in a row, or one call of more than ``INLINE_BLOCK_S``.
  Time the machine's other processes took (an involuntary switch) does not count, so a busy
  machine does not push a fast function off the loop, and a lone pause (a garbage collection)
  does not either. A function that blocks gets the pool's concurrency back; the loop is tried
  again only after a back-off (1 s, doubling up to 60 s each time). ``Workers(..., inline=False)``
  keeps every call in the pool.

With a batch function, single requests go through the ``Batcher`` and each group is one call of
the batch function (placed the same way, with its own measurements); ``invoke_batch`` calls the
batch function once with the whole list (or, without one, the single function once per item,
concurrently up to the limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import resource
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from modelyard.serving.replica.batching import Batcher, Pending
from modelyard.serving.replica.user_code import UserCode, run_async, run_sync

__all__ = [
    "INLINE_AFTER",
    "INLINE_BACKOFF_MAX_S",
    "INLINE_BACKOFF_S",
    "INLINE_BLOCK_S",
    "INLINE_MAX_S",
    "INLINE_STRIKES",
    "INLINE_TRY_S",
    "Placement",
    "Workers",
]

INLINE_MAX_S = 0.002  # a call at most this long may run on the event loop
INLINE_BLOCK_S = 0.02  # one call this long on the loop sends the function to the threads
INLINE_STRIKES = 3  # ... or this many calls in a row over INLINE_MAX_S
INLINE_AFTER = 16  # fast calls in a row in the pool before the loop is tried
INLINE_TRY_S = 0.1  # ... each with at most INLINE_MAX_S of CPU and this much wall time
INLINE_BACKOFF_S = 1.0  # after a slow inline call, threads only for this long (then doubling)
INLINE_BACKOFF_MAX_S = 60.0

T = TypeVar("T")

_RUSAGE_THREAD: int | None = getattr(resource, "RUSAGE_THREAD", None)


class Placement:
    """Where the next call of one function runs: on the event loop or in the pool.

    >>> p = Placement(enabled=True)
    >>> p.on_loop(now=0.0)  # the pool first
    False
    >>> for _ in range(16):
    ...     p.ran_in_pool(cpu_s=0.0003, wall_s=0.001, now=0.0)
    >>> p.on_loop(now=0.0)  # 16 fast calls in a row: the loop
    True
    >>> p.ran_inline(own_s=0.003, blocked=False, now=1.0)  # 3 ms of CPU: a lone pause
    >>> p.ran_inline(own_s=0.0003, blocked=False, now=1.0)
    >>> for _ in range(3):
    ...     p.ran_inline(own_s=0.001, blocked=True, now=1.0)  # blocked 3 times: the pool, 1 s
    >>> p.on_loop(now=1.5)
    False
    >>> p.ran_in_pool(cpu_s=0.0003, wall_s=0.6, now=2.0)  # blocked 0.6 s: not fast
    >>> for _ in range(16):
    ...     p.ran_in_pool(cpu_s=0.0003, wall_s=0.001, now=2.0)
    >>> p.on_loop(now=2.0)
    True
    >>> p.ran_inline(own_s=0.05, blocked=False, now=2.0)  # 50 ms of CPU at once: the pool, 2 s
    >>> p.on_loop(now=3.9)
    False
    >>> Placement(enabled=False).inline
    False
    """

    __slots__ = ("backoff_s", "enabled", "fast", "inline", "retry_at", "strikes")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.inline = False
        self.fast = 0  # fast calls in a row in the pool
        self.strikes = 0  # slow calls in a row on the loop
        self.retry_at = 0.0
        self.backoff_s = INLINE_BACKOFF_S

    def on_loop(self, now: float) -> bool:
        """Whether the next call runs on the loop."""
        if self.inline:
            return True
        if self.enabled and self.fast >= INLINE_AFTER and now >= self.retry_at:
            self.inline = True
            self.strikes = 0
        return self.inline

    def ran_in_pool(self, cpu_s: float, wall_s: float, now: float) -> None:
        """A call in the pool used ``cpu_s`` of its thread's CPU and took ``wall_s``."""
        if cpu_s <= INLINE_MAX_S and wall_s <= INLINE_TRY_S:
            self.fast += 1
        else:
            self.fast = 0

    def ran_inline(self, own_s: float, blocked: bool, now: float) -> None:
        """A call ran on the loop: ``own_s`` its CPU time, or its wall time if it ``blocked``."""
        if own_s <= INLINE_MAX_S and not blocked:
            self.strikes = 0
            return
        self.strikes += 1 if own_s <= INLINE_BLOCK_S else INLINE_STRIKES
        if self.strikes < INLINE_STRIKES or not self.inline:
            return
        self.inline = False
        self.fast = 0
        self.retry_at = now + self.backoff_s
        self.backoff_s = min(self.backoff_s * 2, INLINE_BACKOFF_MAX_S)


def _thread_usage() -> tuple[float, int]:
    """This thread's CPU seconds and voluntary context switches so far (Linux; elsewhere the
    process's CPU time and no switch count, so only CPU time can call a call slow)."""
    if _RUSAGE_THREAD is None:
        return time.thread_time(), 0
    usage = resource.getrusage(_RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw


def _own(before: tuple[float, int], wall_s: float) -> tuple[float, bool]:
    """The time a call that began at ``before`` (``_thread_usage``) took by its own doing, and
    whether it blocked (slept, waited on I/O or a lock): its CPU time, or its wall time if it
    blocked. Waiting for the CPU other processes had is not its doing."""
    cpu_s, switches = _thread_usage()
    blocked = switches > before[1]
    return (wall_s if blocked else cpu_s - before[0]), blocked


def _hidden_loop(call: Callable[[], T]) -> T:
    """``call()`` on the loop's thread with the running loop hidden, as in a worker thread."""
    loop = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    try:
        return call()
    finally:
        asyncio.events._set_running_loop(loop)


class Workers:
    """User code behind ``concurrency`` slots; ``inline=False`` never runs it on the loop."""

    def __init__(
        self,
        code: UserCode,
        concurrency: int,
        max_batch_size: int = 32,
        max_batch_wait_s: float = 0.005,
        *,
        inline: bool = True,
    ) -> None:
        self.code = code
        self.concurrency = concurrency
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="user-code")
        self._async = inspect.iscoroutinefunction(code.function)
        self._async_batch = inspect.iscoroutinefunction(code.batch_function)
        self._max_batch_size = max_batch_size
        self._max_batch_wait_s = max_batch_wait_s
        self.single_placement = Placement(inline)
        self.batch_placement = Placement(inline)
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

    async def invoke(self, item: Any, arrived: float, uuid: str | None = None) -> bytes:
        """One request's answer; grouped with others when there is a batch function.

        ``uuid``: the prediction's uuid as the gateway minted it (None: the replica mints one)."""
        if self._batcher is not None:
            return await self._batcher.submit(item, arrived, uuid)
        async with self.slots:
            return await self._single(item, arrived, uuid)

    async def invoke_batch(
        self, items: Sequence[Any], arrived: float, uuids: Sequence[str] | None = None
    ) -> list[bytes]:
        """One answer per item: one call of the batch function, or the function per item."""
        if not items:
            return []
        if self.code.batch_function is not None:
            async with self.slots:
                return await self._batch(items, [arrived] * len(items), uuids)

        async def one(item: Any, uuid: str | None) -> bytes:
            async with self.slots:
                return await self._single(item, arrived, uuid)

        given = uuids if uuids is not None else [None] * len(items)
        return list(await asyncio.gather(*(one(i, u) for i, u in zip(items, given, strict=True))))

    async def _single(self, item: Any, arrived: float, uuid: str | None = None) -> bytes:
        code = self.code
        if self._async:
            outcome = await run_async(code.function, item)
            return code.single_answer(item, outcome, arrived, uuid)

        def work() -> bytes:
            return code.single_answer(item, run_sync(code.function, item), arrived, uuid)

        return await self._place(self.single_placement, work)

    async def _batch(
        self,
        items: Sequence[Any],
        arrivals: Sequence[float],
        uuids: Sequence[str | None] | None = None,
    ) -> list[bytes]:
        code = self.code
        function = code.batch_function
        assert function is not None
        arg = list(items)
        if self._async_batch:
            outcome = await run_async(function, arg)
            return code.batch_answers(items, outcome, arrivals, uuids)

        def work() -> list[bytes]:
            return code.batch_answers(items, run_sync(function, arg), arrivals, uuids)

        return await self._place(self.batch_placement, work)

    async def _place(self, placement: Placement, work: Callable[[], T]) -> T:
        """Run ``work`` (a call of user code and the encoding of its answer) on the loop or in
        the pool, as ``placement`` says, and tell ``placement`` how it went."""
        began = time.perf_counter()
        if placement.on_loop(began):
            usage = _thread_usage()
            answer = _hidden_loop(work)
            ended = time.perf_counter()
            placement.ran_inline(*_own(usage, ended - began), ended)
            return answer

        def timed() -> tuple[T, float, float]:
            cpu = time.thread_time()
            answer = work()
            return answer, time.thread_time() - cpu, time.perf_counter()

        answer, cpu_s, ended = await asyncio.get_running_loop().run_in_executor(
            self._executor, timed
        )
        placement.ran_in_pool(cpu_s, ended - began, ended)
        return answer

    async def _run_batch(self, batch: Sequence[Pending]) -> list[bytes]:
        """The batcher's runner: it already holds a slot."""
        return await self._batch(
            [p.item for p in batch], [p.arrived for p in batch], [p.uuid for p in batch]
        )
