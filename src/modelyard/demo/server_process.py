"""The demo's Modelyard server: a real ``modelyard server`` process, started and stopped cleanly.

It binds 127.0.0.1 on a free port with the demo's own home. It runs in a session of its own, so a
Ctrl-C in the terminal reaches the demo only, and the demo stops the server in order: SIGTERM
(the server drains, stops its replicas and job runs, flushes the writer), then, if it has not
exited within the grace period, SIGKILL to every process it left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from modelyard.errors import ModelyardError
from modelyard.runtime.ports import free_port

__all__ = ["ServerProcess", "modelyard_command"]


def modelyard_command() -> list[str]:
    """The ``modelyard`` command of this installation (the script next to this interpreter)."""
    script = Path(sys.executable).with_name("modelyard")
    if script.is_file():
        return [str(script)]
    found = shutil.which("modelyard")
    if found:
        return [found]
    return [sys.executable, "-c", "from modelyard.cli import main; main()"]


class ServerProcess:
    def __init__(self, home: Path, *, start_timeout_s: float = 60.0) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "server.log"
        self._log = self.log_path.open("ab")
        env = {**os.environ, "MODELYARD_HOME": str(home)}
        for name in ("MODELYARD_URL", "MODELYARD_API_KEY", "MODELYARD_DATABASE_URL"):
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [
                *modelyard_command(),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--home",
                str(home),
                "--log-level",
                "warning",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            self._wait_healthy(start_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ModelyardError(
                    f"the demo's server exited with status {self.proc.returncode} before "
                    f"answering; its log is {self.log_path}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise ModelyardError(
            f"the demo's server did not answer {self.url}/healthz within {timeout_s:.0f} s; "
            f"its log is {self.log_path}"
        )

    @property
    def admin_key(self) -> str:
        return (self.home / "admin.key").read_text().strip()

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM, wait, then SIGKILL whatever of the server's process tree is left."""
        try:
            family = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(True)]
        except psutil.NoSuchProcess:
            family = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace_s)
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        if self.proc.poll() is None:
            self.proc.wait(5)
        self._log.close()
