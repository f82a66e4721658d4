"""The batcher in-process: when groups close, how big they get, and that slots bound the calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from _async import run
from modelyard.serving.replica.batching import Batcher, Pending


class Recorder:
    """A batch runner that notes each batch's items and start time, and can take its time."""

    def __init__(self, duration_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.started: list[float] = []
        self.duration_s = duration_s
        self.running = 0
        self.peak = 0

    async def __call__(self, batch: Sequence[Pending]) -> list[bytes]:
        self.batches.append([p.item for p in batch])
        self.started.append(time.perf_counter())
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(self.duration_s)
        self.running -= 1
        return [str(p.item).encode() for p in batch]


def test_requests_within_the_wait_form_one_batch_and_a_late_one_its_own() -> None:
    async def main() -> tuple[Recorder, list[bytes], float]:
        recorder = Recorder()
        batcher = Batcher(recorder, asyncio.Semaphore(1), max_size=32, max_wait_s=0.1)
        batcher.start()
        t0 = time.perf_counter()

        async def at(delay: float, item: int) -> bytes:
            await asyncio.sleep(delay)
            return await batcher.submit(item, time.perf_counter())

        answers = await asyncio.gather(at(0, 1), at(0.02, 2), at(0.04, 3), at(0.3, 4))
        await batcher.stop()
        return recorder, list(answers), t0

    recorder, answers, t0 = run(main())
    assert answers == [b"1", b"2", b"3", b"4"]
    assert recorder.batches == [[1, 2, 3], [4]]
    # The first group closed about the wait after its first request, not after the last one.
    assert 0.09 <= recorder.started[0] - t0 < 0.25
    # The lone late request waited about the wait, no longer.
    assert 0.39 <= recorder.started[1] - t0 < 0.6


def test_a_full_batch_goes_at_once_without_waiting() -> None:
    async def main() -> tuple[Recorder, float]:
        recorder = Recorder()
        batcher = Batcher(recorder, asyncio.Semaphore(1), max_size=4, max_wait_s=5.0)
        batcher.start()
        t0 = time.perf_counter()
        await asyncio.gather(*(batcher.submit(i, time.perf_counter()) for i in range(8)))
        elapsed = time.perf_counter() - t0
        await batcher.stop()
        return recorder, elapsed

    recorder, elapsed = run(main())
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert elapsed < 1.0  # nowhere near the 5 s wait


def test_under_load_batches_grow_and_slots_bound_the_calls() -> None:
    """While both slots are busy requests queue; the next free slot takes up to max_size."""

    async def main() -> Recorder:
        recorder = Recorder(duration_s=0.05)
        batcher = Batcher(recorder, asyncio.Semaphore(2), max_size=10, max_wait_s=0.0)
        batcher.start()

        async def client(c: int) -> None:
            for k in range(5):
                await batcher.submit(c * 100 + k, time.perf_counter())

        await asyncio.gather(*(client(c) for c in range(20)))
        await batcher.stop()
        return recorder

    recorder = run(main())
    assert sum(len(b) for b in recorder.batches) == 100
    assert recorder.peak == 2
    assert max(len(b) for b in recorder.batches) == 10
    assert len(recorder.batches) < 30  # far fewer calls than requests


def test_a_failing_runner_fails_its_requests_and_frees_the_slot() -> None:
    async def main() -> tuple[list[object], bool]:
        calls = 0

        async def runner(batch: Sequence[Pending]) -> list[bytes]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return [b"ok" for _ in batch]

        slots = asyncio.Semaphore(1)
        batcher = Batcher(runner, slots, max_size=4, max_wait_s=0.01)
        batcher.start()
        first = await asyncio.gather(batcher.submit(1, time.perf_counter()), return_exceptions=True)
        second = await batcher.submit(2, time.perf_counter())
        await batcher.stop()
        return [*first, second], slots.locked()

    results, locked = run(main())
    assert isinstance(results[0], RuntimeError)
    assert results[1] == b"ok"
    assert not locked


@pytest.mark.parametrize("wait_s", [0.0, 0.005])
def test_lone_requests_pass_through_promptly(wait_s: float) -> None:
    async def main() -> list[float]:
        batcher = Batcher(Recorder(), asyncio.Semaphore(1), max_size=32, max_wait_s=wait_s)
        batcher.start()
        waits = []
        for i in range(20):
            t = time.perf_counter()
            await batcher.submit(i, t)
            waits.append(time.perf_counter() - t)
        await batcher.stop()
        return waits

    waits = sorted(run(main()))
    assert waits[len(waits) // 2] < wait_s + 0.02
