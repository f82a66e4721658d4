"""Whether the Ray head answers: a watch thread the gateway asks before and during every call.

Why: with the head gone or frozen (a cut network, a stopped machine) Ray does not fail calls, it
waits. The GCS port may even still accept connections (the kernel does), so a connect test says
nothing. The watch asks the head's GCS a real question (an internal KV read, Ray's cheapest GCS
RPC) every ``every_s`` with a ``timeout_s`` deadline; one unanswered question marks the head
unreachable, one answer marks it back. Meanwhile:

- the gateway's Ray client (``serving/gateway/ray_client.py``) refuses new predictions at once
  and ends the ones in flight with ``RayUnavailable`` (HTTP 503, naming the runtime and the
  head's address): it cannot tell which replicas still run, and a call to one on the frozen
  head would hang until the request timeout;
- the runtime's own calls to the cluster (deploys, the replica poller, the cluster view) fail
  fast with the same error instead of blocking the control plane;
- nothing restarts: when the head answers again, calls go through again.

The process is the driver of one cluster (``ray.init`` is per process), so the running watch is
process-wide (``current_watch``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any

from modelyard.runtime.ray._cluster import RayConnection, RayUnavailable

__all__ = ["HeadWatch", "LostReplicas", "current_watch", "lost_replicas"]

log = logging.getLogger("modelyard.runtime.ray")

_PROBE_KEY = b"modelyard-head-probe"
_PROBE_NAMESPACE = b"modelyard"

_current: HeadWatch | None = None


def current_watch() -> HeadWatch | None:
    """The watch of this process's Ray connection (None: not a Ray driver, or not watching)."""
    return _current


class _Flags:
    """Named flags that event loops can wait on: ``future(name)`` is a future of the running
    loop, done while the flag is up; ``raise_(name)`` completes them from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._up: set[str] = set()
        self._futures: dict[str, weakref.WeakKeyDictionary[Any, asyncio.Future[None]]] = {}

    def is_up(self, name: str) -> bool:
        return name in self._up

    def future(self, name: str) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        with self._lock:
            per_loop = self._futures.setdefault(name, weakref.WeakKeyDictionary())
            future = per_loop.get(loop)
            if future is None or (future.done() and name not in self._up):
                future = per_loop[loop] = loop.create_future()
                if name in self._up:
                    future.set_result(None)
        return future

    def raise_(self, name: str) -> None:
        with self._lock:
            self._up.add(name)
            futures = list(self._futures.get(name, {}).items())
        for loop, future in futures:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_complete, future)

    def lower(self, name: str) -> None:
        with self._lock:
            self._up.discard(name)

    def forget(self, name: str) -> None:
        with self._lock:
            self._up.discard(name)
            self._futures.pop(name, None)


class LostReplicas(_Flags):
    """Serve applications whose replica the runtime saw stop serving (its actor died, its node
    was lost), until it serves again. A call to one would wait for Serve to place a new actor
    (tens of seconds when a node is lost), so the gateway's Ray client ends it at once: the pool
    then sends the request to another replica (``serving/gateway/ray_client.py``)."""


_lost = LostReplicas()


def lost_replicas() -> LostReplicas:
    """The process-wide set (``RayReplicas`` raises and lowers its applications' flags)."""
    return _lost


class HeadWatch:
    """Asks the head's GCS every ``every_s`` whether it answers within ``timeout_s``."""

    def __init__(
        self, connection: RayConnection, every_s: float = 0.5, timeout_s: float = 1.5
    ) -> None:
        self.connection = connection
        self.every_s = every_s
        self.timeout_s = timeout_s
        self._error: RayUnavailable | None = None
        self._since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down = _Flags()  # "head": up while it does not answer

    def start(self) -> HeadWatch:
        global _current
        self._thread = threading.Thread(target=self._loop, daemon=True, name="modelyard-ray-head")
        self._thread.start()
        _current = self
        return self

    def stop(self) -> None:
        global _current
        self._stop.set()
        if _current is self:
            _current = None
        if self._thread is not None:
            self._thread.join(self.timeout_s + self.every_s + 1)

    def error(self) -> RayUnavailable | None:
        """``RayUnavailable`` while the head does not answer, else None."""
        return self._error

    def check(self) -> None:
        """Raise ``RayUnavailable`` while the head does not answer."""
        error = self._error
        if error is not None:
            raise error

    def down_future(self) -> asyncio.Future[None]:
        """A future of the running loop, done once the head is found unreachable (already done
        while it is)."""
        return self._down.future("head")

    def probe(self) -> str | None:
        """Ask the GCS once: None when it answered, else why not."""
        try:
            import ray

            if not ray.is_initialized():
                return "this server is not connected to it"
            worker: Any = ray._private.worker.global_worker
            worker.gcs_client.internal_kv_get(
                _PROBE_KEY, namespace=_PROBE_NAMESPACE, timeout=self.timeout_s
            )
        except Exception as exc:
            return f"its GCS did not answer within {self.timeout_s:g}s: {str(exc)[:200]}"
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            why = self.probe()
            if self._stop.is_set():
                return
            self._set(why)
            self._stop.wait(max(0.0, self.every_s - (time.monotonic() - started)))

    def _set(self, why: str | None) -> None:
        was_down = self._error is not None
        if why is None:
            if was_down:
                log.warning(
                    "the Ray head at %s answers again after %.1fs; predictions go through again",
                    self.connection.address,
                    time.monotonic() - self._since,
                )
            self._error = None
            self._down.lower("head")
            return
        if was_down:
            return
        self._since = time.monotonic()
        self._error = self.connection.unavailable(why)
        log.warning("%s; predictions get 503 until it answers", self._error.message)
        self._down.raise_("head")


def _complete(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
