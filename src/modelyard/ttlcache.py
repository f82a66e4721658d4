"""One time-to-live cache for lookups that must not hit the database on every request.

Every request names a model by its access key (and, with authentication on, a caller by its API
key); the native predict route needs the model's settings; a dashboard session re-reads its key.
Each such answer is kept for ``ttl_s`` seconds (``DEFAULT_TTL_S``, 2 s, unless the owner says
otherwise). This process drops entries itself when it changes what they hold; another process (a
second server on the same PostgreSQL) sees such a change once its own entry is older than
``ttl_s``.

Thread-safe (one lock) and bounded: at ``max_entries`` the oldest entry goes first (entries are
kept in the order they were stored, so stale ones are always the oldest).

A lookup that read the database before an invalidation must not put its (old) answer back after
it: callers take ``generation()`` before reading and pass it to ``put``, which then does nothing
if anything was invalidated in between.

Stale if error: an entry older than ``ttl_s`` is no longer answered by ``get``, but ``stale(key)``
still gives it, for at most ``stale_s`` seconds (``DEFAULT_STALE_S``, one hour) after it was
stored, so a lookup whose database read fails (the store is unreachable) can go on with the last
known answer instead of failing the request. An invalidation in this process drops the stale
value too; a lookup that learns the key is gone calls ``forget_stale``.

>>> cache: TTLCache[str] = TTLCache(ttl_s=2.0, max_entries=2)
>>> for key in ("a", "b", "c"):
...     cache.put(key, key.upper())
>>> cache.get("a") is None, cache.get("c")
(True, 'C')
>>> expired: TTLCache[str] = TTLCache(ttl_s=0.0)
>>> expired.put("k", "last known")
>>> expired.get("k"), expired.stale("k")
(None, 'last known')
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from modelyard.errors import InvalidInput

__all__ = ["DEFAULT_MAX_ENTRIES", "DEFAULT_STALE_S", "DEFAULT_TTL_S", "TTLCache"]

V = TypeVar("V")
DEFAULT_TTL_S = 2.0
DEFAULT_STALE_S = 3600.0
DEFAULT_MAX_ENTRIES = 10_000


class TTLCache(Generic[V]):
    """``key -> value`` for ``ttl_s`` seconds of ``clock`` (monotonic), at most ``max_entries``;
    expired values stay available to ``stale`` for ``stale_s`` seconds (as many again at most)."""

    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        stale_s: float = DEFAULT_STALE_S,
    ) -> None:
        if max_entries < 1:
            raise InvalidInput(f"TTLCache max_entries={max_entries!r} must be >= 1")
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, V]] = {}  # oldest first
        self._stale: dict[str, tuple[float, V]] = {}  # expired entries, oldest first
        self._generation = 0

    def get(self, key: str) -> V | None:
        """The value stored under ``key`` less than ``ttl_s`` ago, else None."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now - entry[0] >= self.ttl_s:
                del self._entries[key]
                self._keep_stale(key, entry)
                return None
            return entry[1]

    def _keep_stale(self, key: str, entry: tuple[float, V]) -> None:
        """Under the lock: ``entry`` expired; keep it for ``stale`` (bounded like the cache)."""
        self._stale.pop(key, None)
        while len(self._stale) >= self.max_entries:
            del self._stale[next(iter(self._stale))]
        self._stale[key] = entry

    def stale(self, key: str) -> V | None:
        """The last value stored under ``key``, expired or not, if stored less than ``stale_s``
        ago and not invalidated since: for a caller whose database read just failed."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key) or self._stale.get(key)
            if entry is None or now - entry[0] >= self.stale_s:
                return None
            return entry[1]

    def forget_stale(self, key: str) -> None:
        """Drop the expired value of ``key`` (the database says it no longer exists)."""
        with self._lock:
            self._stale.pop(key, None)

    def generation(self) -> int:
        """Take this before reading what ``put`` will store; see the module docstring."""
        return self._generation

    def put(self, key: str, value: V, generation: int | None = None) -> None:
        """Keep ``value`` under ``key`` from now on, unless something was invalidated since
        ``generation`` was taken. When full, the oldest entries make room."""
        now = self._clock()
        with self._lock:
            if generation is not None and generation != self._generation:
                return
            self._entries.pop(key, None)  # stored again: the newest now
            self._stale.pop(key, None)
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (now, value)

    def discard(self, key: str) -> None:
        """Drop ``key`` (its value changed)."""
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)
            self._stale.pop(key, None)

    def discard_where(self, predicate: Callable[[V], bool]) -> None:
        """Drop every entry whose value matches (e.g. all keys of one model)."""
        with self._lock:
            self._generation += 1
            self._entries = {k: e for k, e in self._entries.items() if not predicate(e[1])}
            self._stale = {k: e for k, e in self._stale.items() if not predicate(e[1])}

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._stale.clear()

    def __len__(self) -> int:
        return len(self._entries)
