"""Real replica processes (``python -m modelyard.serving.replica``) for serving tests.

One starter for the tests that talk to replicas over loopback without the runtime's supervisor:
``start_replica`` launches one on a free port with its output in a log file, ``wait_healthy``
waits for its ``/healthz`` (failing with the log if it exits first), ``stop_replica`` ends it.
``replica_argv`` is the command line alone, for tests that hand it to the runtime or run it once.
``ended`` says whether any process has stopped running its code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from modelyard.runtime import free_port

__all__ = ["Replica", "ended", "replica_argv", "start_replica", "stop_replica", "wait_healthy"]


@dataclass
class Replica:
    """A started replica process: its id, URL, process and log file."""

    replica_id: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def invoke(self, body: Any, **kw: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/invoke", json=body, timeout=30, **kw)

    def invoke_batch(self, body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/invoke_batch", json=body, timeout=30)


def replica_argv(snapshot: Path, file: str, port: int, replica_id: str, *args: str) -> list[str]:
    """The replica's command line: serve ``file`` of ``snapshot`` on ``port``, plus ``args``."""
    argv = [sys.executable, "-m", "modelyard.serving.replica", "--snapshot", str(snapshot)]
    argv += ["--file", file, "--port", str(port), "--replica-id", replica_id, *args]
    return argv


def start_replica(
    snapshot: Path,
    home: Path,
    log: Path,
    file: str,
    *args: str,
    replica_id: str | None = None,
    env: dict[str, str] | None = None,
) -> Replica:
    """Start a replica on a free port (id ``r-PORT`` unless given); stdout and stderr to ``log``.

    ``MODELYARD_HOME`` is ``home``, so a test can check the replica never wrote under it.
    """
    port = free_port()
    rid = replica_id or f"r-{port}"
    argv = replica_argv(snapshot, file, port, rid, *args)
    full_env = {**os.environ, **(env or {}), "MODELYARD_HOME": str(home)}
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    return Replica(rid, f"http://127.0.0.1:{port}", process, log)


def wait_healthy(replica: Replica, timeout_s: float = 60.0) -> None:
    """Return once ``/healthz`` answers 200; fail with the log if the process exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise AssertionError(f"replica exited early:\n{replica.log.read_text()}")
        try:
            if httpx.get(f"{replica.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"replica not healthy after {timeout_s} s:\n{replica.log.read_text()}")


def stop_replica(replica: Replica) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if replica.process.poll() is None:
        replica.process.terminate()
        try:
            replica.process.wait(10)
        except subprocess.TimeoutExpired:
            replica.process.kill()
            replica.process.wait()


def ended(pid: int) -> bool:
    """Whether ``pid`` is a zombie or gone. One call, no ``pid_exists`` first: whoever owns the
    process may reap it between two calls."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
