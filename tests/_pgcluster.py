"""A private PostgreSQL cluster for tests that stop and restart the database under load.

``pg_cluster()`` runs ``initdb`` and ``pg_ctl`` into a new temporary folder and starts the server
on a free loopback port (TCP on 127.0.0.1 only, no Unix socket), so a test can ``stop()``,
``start()`` and ``restart()`` it at will; the machine's own PostgreSQL (and every other test's
database) is never touched. The cluster is always torn down at the end of the block (stopped
``immediate``, folder removed), whatever the test did; only a test process killed outright
(SIGKILL, or a SIGTERM pytest does not catch) leaves it running: its folder is
``$TMPDIR/modelyard-pg-*``, stopped with ``pg_ctl -D <folder>/data -m immediate stop``.

Run as root (as in this project's containers), PostgreSQL refuses to start: the cluster's
programs then run as the ``postgres`` user, which owns the folder. Without ``initdb`` on the PATH
(or under ``pg_config --bindir``) the tests that need a cluster skip saying so, except under CI,
where they fail.

The cluster trades crash safety of the machine for speed (``fsync=off``): a stop, even
``immediate``, loses nothing a client saw committed (``synchronous_commit`` stays on, so a commit
has reached the operating system), which is what restart tests check; a power loss could.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from modelyard.runtime import free_port

__all__ = ["PgCluster", "find_pg_bin", "pg_cluster"]

StopMode = Literal["smart", "fast", "immediate"]
_USER = "postgres"


def find_pg_bin() -> Path | None:
    """The folder that holds ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not
    installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    try:
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    folder = Path(bindir)
    return folder if (folder / "initdb").exists() and (folder / "pg_ctl").exists() else None


class PgCluster:
    """One cluster in ``folder`` (``data/`` and ``server.log``) on ``127.0.0.1:port``."""

    def __init__(self, folder: Path, bindir: Path, port: int) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.bindir = bindir
        self.port = port
        self._as_user: dict[str, Any] = {"user": _USER} if os.geteuid() == 0 else {}

    @property
    def url(self) -> str:
        """The ``postgres`` database as the ``postgres`` superuser (trust authentication)."""
        return f"postgresql://{_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=self.folder,
            check=False,
            **self._as_user,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited with {done.returncode}: {done.stderr.strip()}; "
                f"the server's log: {self.tail_log()}"
            )
        return done

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", _USER, "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "50",
            "shared_buffers": "32MB",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self, timeout_s: float = 60) -> None:
        """Start the server; returns once it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t",
                  str(int(timeout_s)), "start", timeout_s=timeout_s + 10)  # fmt: skip
        self.wait_ready(timeout_s)

    def stop(self, mode: StopMode = "fast", timeout_s: float = 60) -> None:
        """Stop the server: ``fast`` ends every session cleanly, ``immediate`` as a crash
        would (the next start recovers from the WAL)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout_s)),
                  "stop", timeout_s=timeout_s + 10)  # fmt: skip

    def restart(self, mode: StopMode = "fast") -> None:
        self.stop(mode)
        self.start()

    @property
    def running(self) -> bool:
        status = subprocess.run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            timeout=30,
            check=False,
            **self._as_user,
        )
        return status.returncode == 0

    def wait_ready(self, timeout_s: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def tail_log(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def destroy(self) -> None:
        """Stop (``immediate``) if running, then remove the folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _new_folder() -> Path:
    """A folder the cluster's user can enter (pytest's tmp_path is root-only when root runs)."""
    folder = Path(tempfile.mkdtemp(prefix="modelyard-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, _USER, _USER)
    return folder


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """A started private cluster; stopped and removed when the block ends."""
    bindir = find_pg_bin()
    if bindir is None:
        message = "PostgreSQL's initdb and pg_ctl are not installed (not on PATH, no pg_config)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI requires them for the PostgreSQL outage tests")
        pytest.skip(f"{message}; install PostgreSQL's server package to run this test")
    folder = _new_folder()
    cluster = PgCluster(folder, bindir, free_port())
    try:
        cluster.init()
        for attempt in range(3):  # the free port may be taken before the server binds it
            try:
                cluster.start()
                break
            except AssertionError:
                if attempt == 2 or "could not bind" not in cluster.tail_log():
                    raise
                cluster.port = free_port()
                with (cluster.data / "postgresql.conf").open("a") as conf:
                    conf.write(f"port = {cluster.port}\n")
        yield cluster
    finally:
        cluster.destroy()
