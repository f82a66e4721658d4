"""Where user code runs (``serving.replica.workers``): on the loop once fast, in the pool when it
blocks, never more than ``concurrency`` calls at once either way.

Real ``Workers`` on a real event loop with real threads and real user functions (no mocks). Which
thread ran a call is what the function itself records.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from modelyard.serving.replica.user_code import UserCode
from modelyard.serving.replica.workers import INLINE_AFTER, INLINE_STRIKES, Workers

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """``scenario()`` on a fresh event loop, failing after 60 s instead of hanging."""

    async def limited() -> T:
        return await asyncio.wait_for(scenario(), 60)

    return asyncio.run(limited())


async def until_inline(workers: Workers, item: Any = 0) -> None:
    """Call until the function runs on the loop (a busy machine may slow some calls in the pool,
    which resets the count of fast calls in a row)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if workers.single_placement.inline:
            return
        await workers.invoke(item, time.perf_counter())
    raise AssertionError("not on the loop after 30 s of fast calls")


class Recorder:
    """A user function that records the thread of each call and how many ran at once."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.sleep_s = sleep_s
        self.threads: list[int] = []
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, item: Any) -> Any:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.threads.append(threading.get_ident())
        try:
            if self.sleep_s:
                time.sleep(self.sleep_s)
            return {"echo": item}
        finally:
            with self.lock:
                self.active -= 1


def _workers(fn: Any, concurrency: int, **kwargs: Any) -> Workers:
    return Workers(UserCode(fn, "predict"), concurrency, **kwargs)


def test_a_fast_function_moves_onto_the_loop_after_fast_calls_in_the_pool() -> None:
    fn = Recorder()

    async def scenario() -> int:
        workers = _workers(fn, 4)
        workers.start()
        try:
            await until_inline(workers, {"i": -1})
            for i in range(20):
                answer = orjson.loads(await workers.invoke({"i": i}, time.perf_counter()))
                assert answer["ok"] is True and answer["output"] == {"echo": {"i": i}}
        finally:
            await workers.stop()
        return threading.get_ident()

    loop_thread = run(scenario)
    assert loop_thread not in fn.threads[:INLINE_AFTER], "the first calls run in the pool"
    assert fn.threads[-20:] == [loop_thread] * 20, "then on the loop's thread"


def test_inline_false_keeps_every_call_in_the_pool() -> None:
    fn = Recorder()

    async def scenario() -> int:
        workers = _workers(fn, 2, inline=False)
        workers.start()
        try:
            for i in range(INLINE_AFTER * 2):
                await workers.invoke(i, time.perf_counter())
        finally:
            await workers.stop()
        return threading.get_ident()

    loop_thread = run(scenario)
    assert loop_thread not in fn.threads


def test_a_blocking_function_goes_back_to_the_pool_and_keeps_its_concurrency() -> None:
    # 2 ms of sleep: fast enough to be tried on the loop, but it blocks, so it goes back to the
    # pool after INLINE_STRIKES calls, where four calls overlap again.
    fn = Recorder(sleep_s=0.002)

    async def scenario() -> tuple[int, bool]:
        workers = _workers(fn, 4)
        workers.start()
        workers.single_placement.backoff_s = 3600.0  # no second trial on a slow machine
        try:
            await until_inline(workers)
            for i in range(INLINE_STRIKES):
                await workers.invoke(i, time.perf_counter())
            back_in_pool = not workers.single_placement.inline
            fn.peak = 0
            await asyncio.gather(*(workers.invoke(i, time.perf_counter()) for i in range(16)))
        finally:
            await workers.stop()
        return threading.get_ident(), back_in_pool

    loop_thread, back_in_pool = run(scenario)
    assert back_in_pool
    # Tried on the loop, blocked there INLINE_STRIKES times in a row (fewer if one call took over
    # INLINE_BLOCK_S on a busy machine), and no more.
    assert 1 <= fn.threads.count(loop_thread) <= INLINE_STRIKES
    assert loop_thread not in fn.threads[-16:]
    assert fn.peak >= 2  # calls overlap again (on the loop they never would); 4 when idle


def test_a_slow_call_never_blocks_the_loop() -> None:
    # A first call of 0.3 s (a model loading lazily) runs in the pool: the loop stays free.
    fn = Recorder(sleep_s=0.3)

    async def scenario() -> float:
        workers = _workers(fn, 2)
        workers.start()
        try:
            call = asyncio.ensure_future(workers.invoke(1, time.perf_counter()))
            await asyncio.sleep(0.05)
            began = time.perf_counter()
            await asyncio.sleep(0.01)
            waited = time.perf_counter() - began
            await call
        finally:
            await workers.stop()
        return waited

    assert run(scenario) < 0.2


def test_concurrency_one_serialises_calls_on_the_loop_and_in_the_pool() -> None:
    fn = Recorder()

    async def scenario() -> None:
        workers = _workers(fn, 1)
        workers.start()
        try:
            # Concurrent requests while the function moves from the pool onto the loop.
            for _ in range(50):
                await asyncio.gather(
                    *(workers.invoke(i, time.perf_counter()) for i in range(INLINE_AFTER))
                )
                if workers.single_placement.inline:
                    break
            await asyncio.gather(*(workers.invoke(i, time.perf_counter()) for i in range(8)))
        finally:
            await workers.stop()

    run(scenario)
    assert fn.peak == 1
    assert len(set(fn.threads)) == 2  # both places were used, never at once


def test_user_code_on_the_loop_may_run_its_own_event_loop() -> None:
    def predict(item: Any) -> Any:
        async def double() -> Any:
            await asyncio.sleep(0)
            return item * 2

        return asyncio.run(double())  # works in a worker thread, so it must on the loop too

    async def scenario() -> list[Any]:
        workers = _workers(predict, 2)
        workers.start()
        try:
            await until_inline(workers, 0)
            answers = [await workers.invoke(i, time.perf_counter()) for i in range(40)]
        finally:
            await workers.stop()
        return [orjson.loads(a)["output"] for a in answers]

    assert run(scenario) == [i * 2 for i in range(40)]  # on the loop: no 'running loop' error
