"""Fixtures for the dashboard: the real app in-process (lifespan, real SQLite, real runtime)
for HTTP-level tests, and Debian's Chromium driven by Playwright for the browser tests.

Chromium: ``/usr/bin/chromium`` from Debian's ``chromium`` package, never Playwright's own
download. When it is missing the session fixture installs it with apt-get; if that fails the
browser tests fail with the reason under CI and skip with the reason elsewhere.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from _async import run
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


async def login_form_token(client: httpx.AsyncClient) -> str:
    """The sign-in form's CSRF token (its cookie is now in ``client``)."""
    page = await client.get("/ui/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def page_csrf(client: httpx.AsyncClient) -> str:
    """The session's CSRF token, read from the overview page's meta tag."""
    overview = await client.get("/ui/")
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', overview.text)
    assert found, overview.text
    return found.group(1)


@dataclass
class Visitor:
    """One more browser: its own cookies, signed in as a user."""

    client: httpx.AsyncClient
    csrf: str


@dataclass
class Ui:
    """An in-process server and a client that keeps cookies like a browser."""

    client: httpx.AsyncClient
    services: Services
    admin: str
    transport: httpx.ASGITransport | None = None

    async def sign_in_password(self, name: str, password: str) -> httpx.Response:
        """Post the password form with ``self.client``; the answer (303 when it worked)."""
        token = await login_form_token(self.client)
        return await self.client.post(
            "/ui/login", data={"csrf": token, "name": name, "password": password, "next": "/ui/"}
        )

    @asynccontextmanager
    async def visitor(self, name: str, password: str) -> AsyncIterator[Visitor]:
        """A second client signed in as ``name`` (so a test can be several people at once)."""
        async with httpx.AsyncClient(
            transport=self.transport, base_url="http://testserver", timeout=60
        ) as client:
            token = await login_form_token(client)
            answer = await client.post(
                "/ui/login",
                data={"csrf": token, "name": name, "password": password, "next": "/ui/"},
            )
            assert answer.status_code == 303, answer.text
            yield Visitor(client, await page_csrf(client))

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
            yield Ui(client, services, admin, transport)


@pytest.fixture
def with_ui(modelyard_home: Path) -> Callable[..., Any]:
    """``with_ui(scenario)`` runs ``await scenario(ui)`` against a fresh in-process server."""

    def go(scenario: Callable[[Ui], Awaitable[T]], **config: Any) -> T:
        async def whole() -> T:
            async with serve_ui(modelyard_home, **config) as ui:
                return await scenario(ui)

        return run(whole())

    return go


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Server config for each database: ``with_ui(scenario, **database)``."""
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("postgres_schema_url")}


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
    # Session-scoped per pytest-xdist worker: the workers take turns installing it.
    with open(Path(tempfile.gettempdir()) / "modelyard-tests-chromium.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        problem = _install_chromium()
    if problem is not None:
        message = f"Debian's chromium is needed for the dashboard's browser tests: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


# -- a served app and a browser page -------------------------------------------------------------


@dataclass
class Running:
    url: str
    admin: str
    app: Any

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}


@contextmanager
def serve_in_thread(home: Path, **config: Any) -> Iterator[Running]:
    """The server app (lifespan and all: store, registry, runtime, scheduler) on uvicorn in a
    thread, on a free loopback port; stopped through uvicorn's own shutdown."""
    port = free_port()
    app = create_app(ServerConfig(home=home, port=port, inject_env=False, **config))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    said: list[str] = []  # uvicorn's own error log: a failed startup's traceback is there
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(handler)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    while not server.started:
        alive = thread.is_alive() and time.monotonic() < deadline
        assert alive, "the server did not start:\n" + "\n".join(said)[-5000:]
        time.sleep(0.05)
    try:
        admin = (home / "admin.key").read_text().strip()
        yield Running(f"http://127.0.0.1:{port}", admin, app)
    finally:
        server.should_exit = True
        thread.join(90)
        logging.getLogger("uvicorn.error").removeHandler(handler)


def watch(page: Any, problems: list[str]) -> None:
    """Collect console errors and warnings, page errors and failed requests of ``page``.

    CSP violations are console errors, so they are caught here. (Give ``wait_for_function`` an
    arrow function, ``"() => ..."``: Playwright polls a bare expression through ``eval``, which
    the dashboard's Content-Security-Policy refuses.)"""
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(  # a fetch() cut short by leaving the page is aborted, not failed
        "requestfailed",
        lambda r: (
            problems.append(f"request failed: {r.url} {r.failure}")
            if r.failure != "net::ERR_ABORTED"
            else None
        ),
    )


def focus_reaches(page: Any, selectors: list[str], presses: int = 60) -> None:
    """Tab from the top of the page until each selector has had the keyboard focus."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.focus("body")
    seen: set[str] = set()
    for _ in range(presses):
        page.keyboard.press("Tab")
        for selector in selectors:
            if page.evaluate(
                "(s) => document.activeElement === document.querySelector(s)", selector
            ):
                seen.add(selector)
        if seen == set(selectors):
            return
    raise AssertionError(f"Tab never reached {sorted(set(selectors) - seen)}")
