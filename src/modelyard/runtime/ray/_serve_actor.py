"""The generic Ray Serve deployment every replica runs as: Modelyard's replica code in the actor.

The replica's ``argv`` (``python -m MODULE ARGS...``, the command the local runtime starts)
names a module; the actor imports it, calls its ``embedded_app(ARGS)`` (an ASGI app, e.g.
``modelyard.serving.replica.embedded_app``), runs the app's lifespan start-up, and then serves
``post``/``get`` calls from deployment handles by driving the app with one ASGI request each: the
same routes, limits, errors and records as a replica on a Unix socket, with no HTTP server and no
port in the actor (Serve's HTTP proxy is off; only handles reach it).

A memory limit (``MODELYARD_MEMORY_LIMIT_BYTES``) is enforced twice, as locally: the replica
code asks the kernel for ``RLIMIT_DATA`` (``runtime.memlimit``), and a watchdog thread here
samples the actor's resident memory every ``_WATCH_EVERY_S`` and ends the process with
``EXIT_MEMORY`` when it passes the limit (Serve then starts a new actor; the Ray runtime reports
``memory_limit_exceeded``). No user code imports Ray; this module imports none either.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time
from collections.abc import MutableMapping, Sequence
from typing import Any

__all__ = ["EXIT_MEMORY", "MEMORY_MARK", "ServeReplica", "parse_headers"]

EXIT_MEMORY = 137  # what a SIGKILL for memory gives locally
MEMORY_MARK = "modelyard: memory limit exceeded"
_WATCH_EVERY_S = 0.25
_ENTRY = "embedded_app"


def parse_headers(raw: bytes) -> list[tuple[bytes, bytes]]:
    """``b"Name: value\\r\\n..."`` (what the gateway's client sends) as ASGI header pairs."""
    pairs = []
    for line in raw.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            pairs.append((name.strip().lower(), value.strip()))
    return pairs


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ServeReplica:
    """One replica: ``argv`` is the replica's command line (``[python, "-m", MODULE, *ARGS]``)."""

    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self, argv: Sequence[str], replica_id: str, memory_limit_bytes: int | None = None
    ) -> None:
        self.replica_id = replica_id
        args = list(argv)
        if len(args) < 3 or args[1] != "-m":
            raise ValueError(
                f"replica argv {args[:3]!r} is not 'python -m MODULE ...'; the Ray runtime runs "
                "replicas given as a module"
            )
        factory = getattr(importlib.import_module(args[2]), _ENTRY)
        self.app = factory(args[3:])
        self._lifespan: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run_lifespan())
        await self._lifespan.put({"type": "lifespan.startup"})
        await self._started
        if memory_limit_bytes:
            threading.Thread(
                target=self._watch, args=(memory_limit_bytes,), daemon=True, name="my-memwatch"
            ).start()
        print(f"replica {replica_id}: serving in Ray actor pid {os.getpid()}", flush=True)

    async def _run_lifespan(self) -> None:
        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete" and not self._started.done():
                self._started.set_result(None)
            elif message["type"] == "lifespan.startup.failed" and not self._started.done():
                self._started.set_exception(RuntimeError(message.get("message", "start failed")))

        await self.app({"type": "lifespan"}, self._lifespan.get, send)

    def _watch(self, limit: int) -> None:
        while True:
            rss = _rss_bytes()
            if rss > limit:
                print(
                    f"{MEMORY_MARK}: replica {self.replica_id} resident {rss} bytes over its "
                    f"limit of {limit} bytes; stopping it (the runtime starts a new one)",
                    flush=True,
                )
                sys.stderr.flush()
                os._exit(EXIT_MEMORY)
            time.sleep(_WATCH_EVERY_S)

    async def post(self, path: str, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        pairs = parse_headers(headers)
        pairs.append((b"content-type", b"application/json"))
        pairs.append((b"content-length", str(len(body)).encode()))
        return await self._request("POST", path, body, pairs)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self._request("GET", path, b"", [])

    async def _request(
        self, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, bytes]:
        scope = {"type": "http", "method": method, "path": path, "headers": headers}
        sent = False
        status = 500
        parts: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # no disconnect: the handle waits for the answer
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(parts)

    async def check_health(self) -> None:
        """Serve's periodic health check: the app's own ``/healthz``."""
        status, body = await self.get("/healthz")
        if status != 200:
            raise RuntimeError(f"replica {self.replica_id}: /healthz answered {status}: {body!r}")

    async def __del__(self) -> None:  # Serve awaits it on a graceful stop
        await self._lifespan.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(asyncio.shield(self._task), 30)
