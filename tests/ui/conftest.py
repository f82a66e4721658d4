"""Fixtures for the dashboard: the real app in-process (lifespan, real SQLite, real runtime)
for HTTP-level tests, and Debian's Chromium driven by Playwright for the browser tests.

Chromium: ``/usr/bin/chromium`` from Debian's ``chromium`` package, never Playwright's own
download. When it is missing the session fixture installs it with apt-get; if that fails the
browser tests fail with the reason under CI and skip with the reason elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from modelyard.runtime import free_port
from modelyard.server import ServerConfig, Services, create_app

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-screenshots" / "ui"


@dataclass
class Ui:
    """An in-process server and a client that keeps cookies like a browser."""

    client: httpx.AsyncClient
    services: Services
    admin: str

    async def sign_in(self, token: str | None = None) -> str:
        """Sign in through the real form; returns the session's CSRF token."""
        page = await self.client.get("/ui/login")
        login_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert login_csrf, page.text
        answer = await self.client.post(
            "/ui/login",
            data={"csrf": login_csrf.group(1), "api_key": token or self.admin, "next": "/ui/"},
        )
        assert answer.status_code == 303, answer.text
        overview = await self.client.get("/ui/")
        found = re.search(r'<meta name="csrf-token" content="([^"]+)"', overview.text)
        assert found, overview.text
        return found.group(1)


@asynccontextmanager
async def serve_ui(home: Path, **config: Any) -> AsyncIterator[Ui]:
    app = create_app(ServerConfig(home=home, port=free_port(), inject_env=False, **config))
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        admin = (home / "admin.key").read_text().strip()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=60
        ) as client:
            yield Ui(client, services, admin)


@pytest.fixture
def with_ui(modelyard_home: Path) -> Callable[..., Any]:
    """``with_ui(scenario)`` runs ``await scenario(ui)`` against a fresh in-process server."""

    def go(scenario: Callable[[Ui], Awaitable[T]], **config: Any) -> T:
        async def whole() -> T:
            async with serve_ui(modelyard_home, **config) as ui:
                return await scenario(ui)

        return asyncio.run(asyncio.wait_for(whole(), 120))  # type: ignore[arg-type]

    return go


def _install_chromium() -> str | None:
    """None when /usr/bin/chromium is there (installing it if needed), else why not."""
    if os.path.exists(CHROMIUM):
        return None
    if shutil.which("apt-get") is None:
        return "apt-get is not available to install Debian's chromium"
    steps = [["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            return f"{' '.join(step)} exited {done.returncode}: {done.stderr.strip()[-500:]}"
    return None if os.path.exists(CHROMIUM) else f"{CHROMIUM} is still missing after apt-get"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    problem = _install_chromium()
    if problem is not None:
        message = f"Debian's chromium is needed for the dashboard's browser tests: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM
