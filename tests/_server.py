"""A real ``modelyard server`` process for the tests that kill, restart or pair servers.

``ServerProcess(home, database_url, settings)`` runs ``python -m modelyard.server`` on a free
loopback port with its own home (``database_url`` None: the home's SQLite database) and extra
``MODELYARD_*`` settings, its output appended to ``<home>-server.log`` beside the home.
``start()`` returns once ``/healthz`` answers (``launch()`` and ``wait_ready()`` split it, so
several servers can start at once); ``stop(sig)`` returns the exit code, ``kill()`` is SIGKILL.
A ``start()`` after a stop is the same server's next life: same home, same port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Self

import httpx

from _wait import wait_until
from modelyard.runtime import free_port

__all__ = ["ServerProcess"]


class ServerProcess:
    def __init__(
        self,
        home: Path,
        database_url: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.database_url = database_url
        self.settings = dict(settings or {})
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"{home.name}-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> Self:
        """Start the process; it answers a moment later (``wait_ready``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        env.update(self.settings)
        env["MODELYARD_HOME"] = str(self.home)
        if self.database_url is not None:
            env["MODELYARD_DATABASE_URL"] = self.database_url
        argv = [sys.executable, "-m", "modelyard.server", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout_s: float = 90) -> Self:
        try:
            wait_until(
                self._answers, timeout_s, f"the server to answer /healthz ({self.log})", 0.05
            )
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        return self

    def start(self) -> Self:
        return self.launch().wait_ready()

    def _answers(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"the server exited: {self.output}"
        try:
            return httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def output(self) -> str:
        """The end of the server's log (every life's output, appended)."""
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the server if it runs; its exit code (None if it never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.home / 'admin.key').read_text().strip()}"}

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.base}/healthz", timeout=5).json()
        return body
