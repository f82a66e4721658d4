"""A real Modelyard server (uvicorn in a thread, loopback) for remote-backend tests, with the SDK
pointed at it through ``MODELYARD_URL`` and the admin key."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from modelyard.runtime import free_port
from modelyard.server import ServerConfig, create_app
from modelyard.tracking import backends

__all__ = ["remote_sdk"]


@contextmanager
def remote_sdk(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve ``home`` on a free port; yields the URL while the SDK's backend is remote."""
    port = free_port()
    app = create_app(ServerConfig(home=home, port=port, inject_env=False, jobs=False))
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
    monkeypatch.setenv("MODELYARD_URL", url)
    monkeypatch.setenv("MODELYARD_API_KEY", (home / "admin.key").read_text().strip())
    backends.close_all()
    try:
        yield url
    finally:
        backends.close_all()
        server.should_exit = True
        thread.join(30)
