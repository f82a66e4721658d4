"""Reading the next item of an iterator on a thread while the caller works on this one.

A PostgreSQL scan page is computed by the server (its aggregates over 10,000 rows) and then
decoded by the client, and the two took turns: the server idled while the client decoded, the
client waited while the server computed. With one page fetched ahead the two overlap. The thread
spends its time waiting on the socket (psycopg releases the GIL there), so the caller's Python
runs on. Exceptions of the producer reach the caller at the item where they happened; a caller
that stops early (``break``, an error) stops the producer after the item it is on.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar, cast

__all__ = ["read_ahead"]

T = TypeVar("T")

_POLL_S = 0.05  # how often a producer blocked on a full queue looks whether the caller is gone


def read_ahead(items: Iterator[T], depth: int = 1) -> Generator[T, None, None]:
    """``items``, produced on a thread at most ``depth`` items ahead of the caller."""
    if depth < 1:
        raise ValueError(f"depth={depth!r} must be at least 1")
    ready: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: object) -> bool:
        while not stop.is_set():
            try:
                ready.put((kind, value), timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as exc:  # handed to the caller, raised there
            put("error", exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    context = contextvars.copy_context()  # the caller's context (settings, tracing) goes along
    thread = threading.Thread(
        target=context.run, args=(produce,), name="modelyard-read-ahead", daemon=True
    )

    def consume() -> Generator[T, None, None]:
        thread.start()
        try:
            while True:
                kind, value = ready.get()
                if kind == "end":
                    return
                if kind == "error":
                    assert isinstance(value, BaseException)
                    raise value
                yield cast(T, value)  # an item of ``items``
        finally:
            stop.set()
            thread.join()

    return consume()
