"""Fixtures for scheduler and runner tests: a real database, a real runtime, real processes.

Schedulers here tick fast (``tick_s`` 0.05 s) and most tests drive ``tick()`` themselves with an
injected clock, so slots come when the test says, not when the wall clock does.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from modelyard.jobs.notify import Delivery, Notifier
from modelyard.jobs.scheduler import Scheduler
from modelyard.registry import Registry
from modelyard.runtime import LocalRuntime, SupervisorConfig, free_port
from modelyard.specs import JobSpec
from modelyard.store.base import MetricsStore
from modelyard.store.postgres import PostgresStore
from modelyard.store.sqlite import SQLiteStore

T0 = 1_790_000_000_000  # a whole minute, 2026-09-21 UTC


class Clock:
    """Epoch milliseconds the test sets; ``running()`` makes it follow real time from here on,
    ``speed`` times faster."""

    def __init__(self, start_ms: int = T0) -> None:
        self.now = start_ms
        self._base: tuple[float, int] | None = None
        self.speed = 1.0

    def __call__(self) -> int:
        if self._base is None:
            return int(self.now)
        started, at = self._base
        return at + int((time.monotonic() - started) * 1000 * self.speed)

    def set(self, ms: int) -> None:
        self._base = None
        self.now = ms

    def running(self, speed: float = 1.0) -> None:
        self.speed = speed
        self._base = (time.monotonic(), int(self.now))


@dataclass
class World:
    """One server's worth of parts over one database: what a test builds schedulers from."""

    home: Path
    store: MetricsStore
    registry: Registry
    runtime: LocalRuntime
    clock: Clock
    project: Path
    deliveries: list[Delivery] = field(default_factory=list)
    schedulers: list[Scheduler] = field(default_factory=list)

    def script(self, name: str, body: str) -> str:
        """Write a script into the project (snapshots are taken at each run) and return it."""
        (self.project / name).write_text(textwrap.dedent(body))
        return name

    def job(self, name: str, script: str, **options: Any) -> Any:
        defaults: dict[str, Any] = {
            "timeout_ms": 60_000,
            "retries": 0,
            "retry_backoff_ms": 1000,
            "env": {},
            "overlap": "skip",
            "catch_up": "latest",
            "notify": [],
            "notify_on": ["failure"],
        }
        if not any(k in options for k in ("cron", "every_ms", "after", "manual")):
            options["manual"] = True
        defaults.update(options)
        spec = JobSpec(name=name, project=str(self.project), script=script, **defaults)
        return self.registry.create_job(spec)

    def scheduler(self, owner: str = "server-a", **options: Any) -> Scheduler:
        notifier = options.pop("notifier", None) or Notifier(
            attempts=3, backoff_s=0.05, timeout_s=5, on_delivery=self.deliveries.append
        )
        scheduler = Scheduler(
            self.registry,
            self.runtime,
            self.store,
            home=self.home,
            server_url=options.pop("server_url", "http://127.0.0.1:9"),
            owner=owner,
            tick_s=options.pop("tick_s", 0.05),
            clock=options.pop("clock", self.clock),
            notifier=notifier,
            builtin_jobs=options.pop("builtin_jobs", False),
            **options,
        )
        self.schedulers.append(scheduler)
        return scheduler

    def close(self) -> None:
        for scheduler in self.schedulers:
            scheduler.stop(10)
            scheduler.notifier.close(1)
        self.runtime.stop_all(0.2)
        self.store.close()


def make_world(home: Path, store: MetricsStore, project: Path, clock: Clock | None = None) -> World:
    clock = clock or Clock()
    registry = Registry(store, clock=clock)
    runtime = LocalRuntime(home, config=SupervisorConfig(poll_interval_s=0.05, stop_grace_s=0.3))
    project.mkdir(parents=True, exist_ok=True)
    return World(home, store, registry, runtime, clock, project)


@pytest.fixture
def world(tmp_path: Path, modelyard_home: Path) -> Iterator[World]:
    built = make_world(modelyard_home, SQLiteStore(tmp_path / "modelyard.db"), tmp_path / "proj")
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_world(
    request: pytest.FixtureRequest, tmp_path: Path, modelyard_home: Path
) -> Iterator[World]:
    """A ``world`` on a SQLite file, then on PostgreSQL."""
    if request.param == "sqlite":
        store: MetricsStore = SQLiteStore(tmp_path / "modelyard.db")
    else:
        store = PostgresStore(request.getfixturevalue("postgres_schema_url"))
    built = make_world(modelyard_home, store, tmp_path / "proj")
    try:
        yield built
    finally:
        built.close()


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, step_s: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(step_s)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()
