"""A small time-to-live cache for key lookups on the predict path.

Every request names a model by its access key (and, with authentication on, a caller by its API
key). Looking each up in the database would add a round trip per request, so a lookup is kept for
``ttl_s`` seconds. This process drops entries itself when it rotates, revokes, updates or deletes;
another process (a second server on the same PostgreSQL) sees such a change once its own entry is
older than ``ttl_s``. Bounded: when full, stale entries go first, then everything.

A lookup that read the database before an invalidation must not put its (old) answer back after
it: callers take ``generation()`` before reading and pass it to ``put``, which then does nothing
if anything was invalidated in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_TTL_S", "TTLCache"]

V = TypeVar("V")
DEFAULT_TTL_S = 2.0
_MAX_ENTRIES = 10_000


class TTLCache(Generic[V]):
    def __init__(
        self, ttl_s: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 0
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_entries or _MAX_ENTRIES
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, V]] = {}
        self._generation = 0

    def get(self, key: str) -> V | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now - entry[0] >= self.ttl_s:
                del self._entries[key]
                return None
            return entry[1]

    def generation(self) -> int:
        return self._generation

    def put(self, key: str, value: V, generation: int) -> None:
        now = self._clock()
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self._max:
                fresh = {k: e for k, e in self._entries.items() if now - e[0] < self.ttl_s}
                self._entries = fresh if len(fresh) < self._max else {}
            self._entries[key] = (now, value)

    def discard_where(self, predicate: Callable[[V], bool]) -> None:
        """Drop every entry whose value matches (e.g. all keys of one model)."""
        with self._lock:
            self._generation += 1
            self._entries = {k: e for k, e in self._entries.items() if not predicate(e[1])}

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
