"""Streaming a followed log (``?follow=true``) without starving the server.

A followed log is a blocking iterator (``modelyard.runtime.logs.follow_lines`` polls the file
and sleeps). Served as it was, on Starlette's shared thread pool, each stream held one of its 40
threads for as long as the log stayed quiet, even after its client had gone: a cancelled
``to_thread`` call cannot interrupt a thread, so it waited for the next line that never came.
Forty-odd followers on a quiet model stopped static files and every other sync route.

So each stream here:

- has a stop flag its iterator checks at every poll; the flag is set as soon as the response
  ends for any reason (client gone, server stopping, error), and the iterator's thread returns
  within one poll interval;
- runs its iterator on a thread limiter of its own (``LogFollows.limiter``), never on the shared
  default one, and waits on it with ``abandon_on_cancel`` so a disconnect ends the response at
  once;
- holds a slot: at most ``per_key`` streams per API key and ``total`` in all
  (``MODELYARD_LOG_FOLLOW_PER_KEY``, ``MODELYARD_LOG_FOLLOW_TOTAL``); beyond, 429 with a
  ``Retry-After`` header and a message naming the limit.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from modelyard import settings
from modelyard.errors import InvalidInput, Overloaded

__all__ = ["LogFollows", "follow_response"]

RETRY_AFTER_S = 5
_END = object()

Stop = Callable[[], bool]


class LogFollows:
    """The server's count of open follow streams, per key and in all."""

    def __init__(self, per_key: int | None = None, total: int | None = None) -> None:
        per_key = settings.get("log_follow_per_key") if per_key is None else per_key
        total = settings.get("log_follow_total") if total is None else total
        for name, value in (("per_key", per_key), ("total", total)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(
                    f"log follow limit {name}={value!r}; expected a whole number >= 1"
                )
        self.per_key: int = per_key
        self.total: int = total
        self._lock = threading.Lock()
        self._by_key: dict[str, int] = {}
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def active(self) -> int:
        with self._lock:
            return sum(self._by_key.values())

    def active_for(self, key_id: str) -> int:
        with self._lock:
            return self._by_key.get(key_id, 0)

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """Threads for follow streams only (created inside the event loop, on first use)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.total)
        return self._limiter

    def claim(self, key_id: str) -> Callable[[], None]:
        """Take a slot for ``key_id``; returns the function that gives it back (idempotent)."""
        with self._lock:
            active = sum(self._by_key.values())
            mine = self._by_key.get(key_id, 0)
            if mine >= self.per_key:
                raise Overloaded(
                    f"this API key already follows {mine} logs, the limit per key "
                    f"(MODELYARD_LOG_FOLLOW_PER_KEY={self.per_key}); close one, or read without "
                    "follow=true",
                    retry_after_s=RETRY_AFTER_S,
                    limit=self.per_key,
                )
            if active >= self.total:
                raise Overloaded(
                    f"the server already streams {active} followed logs, its limit "
                    f"(MODELYARD_LOG_FOLLOW_TOTAL={self.total}); retry later, or read without "
                    "follow=true",
                    retry_after_s=RETRY_AFTER_S,
                    limit=self.total,
                )
            self._by_key[key_id] = mine + 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                left = self._by_key.get(key_id, 0) - 1
                if left > 0:
                    self._by_key[key_id] = left
                else:
                    self._by_key.pop(key_id, None)

        return release


class _FollowResponse(StreamingResponse):
    """A stream whose end (however it comes) stops its iterator and gives its slot back."""

    def __init__(self, content: AsyncIterator[bytes], finish: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/plain; charset=utf-8")
        self._finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._finish()


def _next(lines: Iterator[str]) -> Any:
    return next(lines, _END)


async def follow_response(
    follows: LogFollows, key_id: str, open_lines: Callable[[Stop], Iterator[str]]
) -> StreamingResponse:
    """A text/plain stream of ``open_lines(stop)``, one line per chunk.

    ``open_lines`` builds the blocking iterator (it may raise NotFound and the like, answered as
    usual) and must end soon after ``stop()`` turns true.
    """
    release = follows.claim(key_id)
    stopped = threading.Event()

    def finish() -> None:
        stopped.set()
        release()

    try:
        lines = await anyio.to_thread.run_sync(open_lines, stopped.is_set, limiter=follows.limiter)
    except BaseException:
        finish()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            while not stopped.is_set():
                line = await anyio.to_thread.run_sync(
                    _next, lines, limiter=follows.limiter, abandon_on_cancel=True
                )
                if line is _END:
                    return
                text = str(line)
                yield (text if text.endswith("\n") else text + "\n").encode()
        finally:
            finish()

    return _FollowResponse(body(), finish)
