"""The demo's Modelyard server: a real ``modelyard server`` process, started and stopped cleanly.

It binds 127.0.0.1 on a free port with the demo's own home. It runs in a session of its own, so a
Ctrl-C in the terminal reaches the demo only, and the demo stops the server in order: SIGTERM
(the server drains, stops its replicas and job runs, flushes the writer), then, if it has not
exited within the grace period, SIGKILL to every process it left behind.

The server prints its admin key once, at first start. The demo copies the server's output to
``server.log`` through a pipe and writes the key there as ``<admin key: see admin.key>``: the key
file is mode 0600, a log should not be a second, more readable copy of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
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
    def __init__(
        self, home: Path, *, start_timeout_s: float = 60.0, tech_interval_s: float = 60.0
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "server.log"
        self._log = self.log_path.open("ab")
        env = {**os.environ, "MODELYARD_HOME": str(home)}
        # The gateway's tech.* interval: the story is short, a minute's interval would write
        # its latency percentiles only after the story ended.
        env["MODELYARD_TECH_INTERVAL"] = f"{tech_interval_s:g}s"
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
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self._copier = threading.Thread(target=self._copy_log, name="server-log", daemon=True)
        self._copier.start()
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

    def _copy_log(self) -> None:
        """Copy the server's output to server.log, the admin key replaced (see the docstring).

        The server writes admin.key before it prints the key, so the key is known by then.
        """
        assert self.proc.stdout is not None
        key = b""
        with contextlib.suppress(ValueError, OSError):  # closed by stop() (a stray holder)
            for line in self.proc.stdout:
                if not key and (self.home / "admin.key").is_file():
                    key = (self.home / "admin.key").read_bytes().strip()
                if key:
                    line = line.replace(key, b"<admin key: see admin.key>")
                self._log.write(line)
                self._log.flush()

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
        # The pipe ends when the last process holding it (server, replicas, runs) is gone.
        self._copier.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._log.close()
