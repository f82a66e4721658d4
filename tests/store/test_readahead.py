"""``read_ahead``: the same items in the same order, the producer's errors where they happened, and
a caller that stops early stops the producer (its iterator closed, its thread ended)."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator

import pytest

from modelyard.store.readahead import read_ahead

_WHO = contextvars.ContextVar("who", default="nobody")


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name == "modelyard-read-ahead"}


def test_items_come_in_order_and_are_produced_ahead_of_the_caller() -> None:
    produced: list[int] = []

    def numbers() -> Iterator[int]:
        for i in range(5):
            produced.append(i)
            yield i

    seen = []
    for item in read_ahead(numbers()):
        if item == 0:
            deadline = time.monotonic() + 5
            while len(produced) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert produced[:2] == [0, 1]  # the next item was made while the caller held this
        seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
    assert not _threads()


def test_an_error_of_the_producer_reaches_the_caller_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise LookupError("page 3 is gone")

    seen = []
    with pytest.raises(LookupError, match="page 3 is gone"):
        for item in read_ahead(failing()):
            seen.append(item)
    assert seen == [1, 2]
    assert not _threads()


def test_a_caller_that_stops_early_stops_the_producer_and_closes_its_iterator() -> None:
    closed = threading.Event()
    produced: list[int] = []

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    items = read_ahead(endless(), depth=2)
    assert next(items) == 0
    items.close()
    assert closed.is_set()
    assert len(produced) <= 4  # the item taken, the queue's two, the one waiting to go in
    assert not _threads()


def test_the_producer_runs_in_the_callers_context() -> None:
    def who() -> Iterator[str]:
        yield _WHO.get()

    token = _WHO.set("caller")
    try:
        assert list(read_ahead(who())) == ["caller"]
    finally:
        _WHO.reset(token)


def test_depth_below_one_is_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match=r"depth=0 must be at least 1"):
        read_ahead(iter([1]), depth=0)
