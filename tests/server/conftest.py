"""Fixtures for server tests: the real app in-process (lifespan run, real SQLite, real runtime)
through ``httpx.ASGITransport``, a tiny project to deploy, and a real server process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from _async import run
from modelyard.runtime import free_port
from modelyard.server import ServerConfig, Services, create_app

T = TypeVar("T")

PREDICT = """
import time

import modelyard

@modelyard.model_metrics
def predict(args):
    time.sleep(args.get("sleep", 0))
    modelyard.track_metric("x", args["x"])
    if args["x"] < 0:
        raise ValueError("x must not be negative")
    return {"double": args["x"] * 2}

def predict_many(items):
    if any(item["x"] < 0 for item in items):
        raise ValueError("x must not be negative")
    return [{"double": item["x"] * 2} for item in items]
"""


@dataclass
class Api:
    """An in-process server: its HTTP client, its parts and its admin key."""

    client: httpx.AsyncClient
    services: Services
    admin: str
    app: Any

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}


@asynccontextmanager
async def serve(home: Path, **config: Any) -> AsyncIterator[Api]:
    app = create_app(ServerConfig(home=home, port=free_port(), **config))
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        admin = (home / "admin.key").read_text().strip()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=120
        ) as client:
            yield Api(client, services, admin, app)


@pytest.fixture
def with_api(modelyard_home: Path) -> Callable[..., Any]:
    """``with_api(scenario, **config)`` runs ``await scenario(api)`` against a fresh server."""

    def go(scenario: Callable[[Api], Awaitable[T]], **config: Any) -> T:
        async def whole() -> T:
            async with serve(modelyard_home, **config) as api:
                return await scenario(api)

        return run(whole())

    return go


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Server config for each database: ``with_api(scenario, **database)``."""
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("postgres_schema_url")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "churn-project"
    root.mkdir()
    (root / "predict.py").write_text(textwrap.dedent(PREDICT))
    return root


# -- a real server process ---------------------------------------------------------------------


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    home: Path
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    @property
    def admin(self) -> str:
        return (self.home / "admin.key").read_text().strip()


def start_server(
    home: Path, port: int, log: Path, timeout: float = 60, settings: dict[str, str] | None = None
) -> ServerProcess:
    """``modelyard server`` as a process (output to ``log``); returns once ``/healthz`` answers.

    ``settings``: extra ``MODELYARD_*`` environment variables for the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(settings or {})
    env["MODELYARD_HOME"] = str(home)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.server", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", home, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {server.output}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"server did not answer in {timeout}s: {server.output}")


@pytest.fixture
def server_process(modelyard_home: Path, tmp_path: Path) -> Iterator[Callable[[], ServerProcess]]:
    """``start()`` runs a server on the test's home (same port each time); all stop at the end."""
    started: list[ServerProcess] = []
    port = free_port()

    def start() -> ServerProcess:
        server = start_server(modelyard_home, port, tmp_path / f"server-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
