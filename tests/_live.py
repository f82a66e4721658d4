"""A real Modelyard server (uvicorn in a thread, loopback) for SDK and remote-backend tests.

One starter for every test that needs the server on a real socket (the SDK's remote backend
speaks real HTTP): ``live_server`` serves a home and yields its URL, ``remote_sdk`` also points
the SDK at it through ``MODELYARD_URL`` and the admin key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from modelyard.runtime import free_port
from modelyard.server import ServerConfig, create_app
from modelyard.tracking import backends

__all__ = ["admin_key", "live_cli", "live_server", "remote_sdk", "serve_app"]


def admin_key(home: Path) -> str:
    """The admin key the server wrote into ``home`` on its first start."""
    return (home / "admin.key").read_text().strip()


@contextmanager
def live_server(home: Path, **config: Any) -> Iterator[str]:
    """Serve ``home`` on a free port until the block ends; yields the URL once /healthz answers.

    ``config`` goes to ``ServerConfig`` (``jobs=False`` for tests that need no scheduler). The
    SDK's cached backends are dropped at the end, so none outlives the server it talked to.
    """
    port = free_port()
    app = create_app(ServerConfig(home=home, port=port, inject_env=False, **config))
    with serve_app(app, port) as url:
        yield url


@contextmanager
def serve_app(app: Any, port: int) -> Iterator[str]:
    """Serve ``app`` (from ``create_app`` with ``port`` in its config) on loopback until the
    block ends; yields the URL once /healthz answers. For tests that also reach into the app."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)
    try:
        yield url
    finally:
        backends.close_all()
        server.should_exit = True
        thread.join(60)


@contextmanager
def remote_sdk(home: Path, monkeypatch: pytest.MonkeyPatch, *, jobs: bool = False) -> Iterator[str]:
    """``live_server`` with the SDK's backend remote: ``MODELYARD_URL`` and the admin key set.

    The scheduler is off unless ``jobs``: tracking tests define no jobs and need none running.
    """
    with live_server(home, jobs=jobs) as url:
        monkeypatch.setenv("MODELYARD_URL", url)
        monkeypatch.setenv("MODELYARD_API_KEY", admin_key(home))
        backends.close_all()
        yield url


@contextmanager
def live_cli(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``live_server`` (no scheduler) with the CLI pointed at it: ``MODELYARD_URL``, the admin key
    and a CLI config of its own (next to ``home``, never the reader's)."""
    with live_server(home, jobs=False) as url:
        monkeypatch.setenv("MODELYARD_URL", url)
        monkeypatch.setenv("MODELYARD_API_KEY", admin_key(home))
        monkeypatch.setenv("MODELYARD_CONFIG", str(home.parent / "cli-config.json"))
        yield url
