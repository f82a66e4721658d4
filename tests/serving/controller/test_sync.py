"""Two controllers on one PostgreSQL database, each with its own home, as two servers run them.

Real parts throughout: builds, replica processes under a ``LocalRuntime``, gateways, registries
and stores on a fresh PostgreSQL schema. Server B never sees the project folder: it gets each
build's snapshot from the database (``registry.snapshots``), prepares its environment, and its
watcher (``Controller.watch``) applies what is done through A, and A's what is done through B.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

import _async
from modelyard.backoff import Backoff
from modelyard.registry import Registry
from modelyard.runtime import LocalRuntime, SupervisorConfig
from modelyard.serving.controller import Controller, EventRelay, sync
from modelyard.serving.gateway import Gateway, GatewayResult
from modelyard.store import BufferedWriter, MetricsStore, open_store

pytestmark = pytest.mark.slow

PREDICT = """
    import modelyard_tinypkg

    VERSION = "{version}"


    def predict(args):
        return {"version": VERSION, "value": modelyard_tinypkg.VALUE, "double": args["x"] * 2}
"""
# A pip package inside the project, built by its own PEP 517 back-end: installs offline.
BACKEND = """
    import os, zipfile

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        name = "modelyard_tinypkg-1.0-py3-none-any.whl"
        dist = "modelyard_tinypkg-1.0.dist-info"
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
            wheel.writestr("modelyard_tinypkg/__init__.py", "VALUE = 42\\n")
            wheel.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\\nName: modelyard_tinypkg\\n"
                           "Version: 1.0\\n")
            wheel.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\n"
                           "Tag: py3-none-any\\n")
            wheel.writestr(f"{dist}/RECORD", "")
        return name
"""
PYPROJECT = """
    [build-system]
    requires = []
    build-backend = "backend"
    backend-path = ["."]
"""
FAST = SupervisorConfig(
    poll_interval_s=0.05, health_interval_s=0.2, backoff_base_s=0.2, stop_grace_s=1.0
)
run = partial(_async.run, timeout_s=240)


def project(root: Path, version: str) -> Path:
    files = {
        "predict.py": PREDICT.replace("{version}", version),
        "requirements.txt": "--no-index\n./tinypkg\n",
        "tinypkg/pyproject.toml": PYPROJECT,
        "tinypkg/backend.py": BACKEND,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


@dataclass
class Server:
    """What one server composes, over its own home and the shared database."""

    home: Path
    store: MetricsStore
    writer: BufferedWriter
    registry: Registry
    runtime: LocalRuntime
    gateway: Gateway
    controller: Controller

    async def call(self, x: int = 1) -> GatewayResult:
        return await self.gateway.invoke("churn", orjson.dumps({"x": x}))

    def running(self) -> list[tuple[str, str]]:
        """(deployment CRN, replica id) of each replica of ``churn`` running here."""
        return sorted(
            (r.deployment_crn, r.replica_id) for r in self.controller._fleet.of_model("churn")
        )

    async def close(self) -> None:
        await self.controller.shutdown()
        await self.gateway.close()
        await asyncio.to_thread(self.runtime.stop_all)
        self.writer.close()
        self.store.close()


def server(home: Path, url: str) -> Server:
    store = open_store(url)
    writer = BufferedWriter(store, flush_interval_ms=50)
    registry = Registry(store, cache_ttl_s=0)
    relay = EventRelay()
    runtime = LocalRuntime(home, on_event=relay, config=FAST)
    gateway = Gateway(writer)
    controller = Controller(home, store, registry, runtime, gateway, events=relay)
    return Server(home, store, writer, registry, runtime, gateway, controller)


async def until(check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> Any:
    """Wait for ``check()`` to be truthy (it may be a coroutine function); fail saying ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout_s:g}s")


async def version(s: Server) -> str | None:
    result = await s.call()
    return result.envelope["response"]["version"] if result.http_status == 200 else None


def test_deploy_rollback_scale_stop_and_delete_reach_the_other_server(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    v1, v2 = project(tmp_path / "v1", "v1"), project(tmp_path / "v2", "v2")

    async def scenario() -> None:
        a = server(tmp_path / "home-a", postgres_schema_url)
        b = server(tmp_path / "home-b", postgres_schema_url)
        try:
            await a.controller.restore()
            await b.controller.restore()
            first = await a.controller.deploy(
                "churn", v1, "predict.py", "predict", example={"x": 1},
                requirements="requirements.txt",
            )  # fmt: skip
            assert first.ok, first.log_tail
            digest = first.build.digest
            assert a.registry.snapshots.get(digest) is not None  # stored at build time
            assert not (b.home / "builds" / "snapshots" / digest).exists()

            # B's first look: it fetches the snapshot and makes the environment, shown as
            # "preparing" while the environment is made (held here until the test saw it).
            prepare = b.controller._prepare
            held, release = asyncio.Event(), asyncio.Event()
            make_env = prepare._environment

            def slow_environment(*args: Any) -> str:
                asyncio.run_coroutine_threadsafe(_set(held), loop).result()
                asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
                return make_env(*args)

            loop = asyncio.get_running_loop()
            prepare._environment = slow_environment  # type: ignore[method-assign,assignment]
            assert await b.controller._sync.tick() == ["churn"]
            await asyncio.wait_for(held.wait(), 30)
            assert b.controller.status("churn").preparing == "preparing the environment"
            assert (b.home / "builds" / "snapshots" / digest).is_dir()  # fetched by now
            release.set()
            assert await until(lambda: version(b), "B serving v1") == "v1"
            assert b.controller.status("churn").preparing is None
            answer = (await b.call()).envelope["response"]
            assert answer["value"] == 42  # the requirement, installed on B

            # From here the watchers run on their own, every 0.2 s.
            # B rolls to a deployment made through A without failing a request.
            a.controller.watch(0.2)
            b.controller.watch(0.2)
            statuses: list[int] = []
            stop = asyncio.Event()

            async def load() -> None:
                while not stop.is_set():
                    statuses.append((await b.call()).http_status)
                    await asyncio.sleep(0.01)

            loading = asyncio.create_task(load())
            second = await a.controller.deploy(
                "churn", v2, "predict.py", "predict", example={"x": 1},
                requirements="requirements.txt",
            )  # fmt: skip
            assert second.ok, second.log_tail
            await until(lambda: _is(version(b), "v2"), "B rolling to v2")
            stop.set()
            await loading
            assert len(statuses) > 10 and set(statuses) == {200}

            back = await b.controller.rollback("churn")  # through B
            assert back.ok and back.build.crn == first.build.crn
            await until(lambda: _is(version(a), "v1"), "A rolling back to v1")
            assert {d for d, _ in a.running()} == {back.deployment.crn}  # type: ignore[union-attr]

            await a.controller.scale("churn", 2)
            await until(lambda: len(b.running()) == 2, "B scaling to 2")

            await b.controller.stop("churn")
            await until(lambda: not a.running() and a.gateway.pool("churn") is None, "A stop")
            assert (await a.call()).http_status in (404, 503)

            await a.controller.start("churn")
            await until(lambda: _is(version(b), "v1"), "B starting again")

            await a.controller.delete("churn")
            await until(lambda: not b.running() and b.gateway.pool("churn") is None, "B delete")
        finally:
            await asyncio.gather(b.close(), a.close())

    run(scenario())


async def _set(event: asyncio.Event) -> None:
    event.set()


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


def test_a_build_missing_everywhere_is_reported_and_retried_with_back_off(
    tmp_path: Path, postgres_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment whose snapshot is neither on this server nor in the database (a build
    made before snapshots were stored, by a server that is gone) fails here with the digest and
    what to do, and the watcher does not try again at every look."""
    v1 = project(tmp_path / "v1", "v1")
    # A back-off longer than the test, so "not tried again yet" holds however slow the machine.
    monkeypatch.setattr(sync, "RETRY", Backoff(base_s=600.0, cap_s=600.0))

    async def scenario() -> None:
        a = server(tmp_path / "home-a", postgres_schema_url)
        b = server(tmp_path / "home-b", postgres_schema_url)
        try:
            outcome = await a.controller.deploy(
                "churn", v1, "predict.py", "predict", requirements="requirements.txt"
            )
            assert outcome.ok, outcome.log_tail
            assert a.registry.snapshots.delete(outcome.build.digest)
            error = await b.controller._sync.converge("churn")
            assert error is not None and outcome.build.digest in error
            assert "deploy the model again" in error
            assert (await b.call()).http_status == 503  # its pool says: no replicas
            assert await b.controller._sync.tick() == []  # backing off, not retrying
            # A's next life still has the folder: its restore stores the archive again, and
            # B's next attempt serves.
            await a.close()
            a = server(tmp_path / "home-a", postgres_schema_url)
            assert await a.controller.restore() == {"churn": None}
            assert a.registry.snapshots.get(outcome.build.digest) is not None
            assert await b.controller._sync.converge("churn") is None
            assert (await b.call()).http_status == 200
        finally:
            await asyncio.gather(b.close(), a.close())

    run(scenario())
