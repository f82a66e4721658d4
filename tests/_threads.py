"""Threads for tests that race work against itself: start them all, wait for them all.

``in_threads`` runs ``work(i)`` for i in 0..n-1 on n threads and returns once every one ended;
``run_together`` also lines the workers up at a barrier and hands back what each returned or
raised, for tests that count winners and losers of a race.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["in_threads", "run_together"]


def in_threads(work: Callable[[int], object], n: int, timeout_s: float | None = None) -> None:
    """Run ``work(0)`` .. ``work(n - 1)`` on ``n`` threads at once; join each (``timeout_s``).

    Exceptions stay in their thread (the work records what the test checks).
    """
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)


def run_together(workers: list[Callable[[], Any]]) -> list[Any]:
    """Start the workers at one barrier; return what each returned or raised."""
    barrier = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = workers[i]()
        except BaseException as exc:
            results[i] = exc

    in_threads(run, len(workers), timeout_s=120)
    return results
