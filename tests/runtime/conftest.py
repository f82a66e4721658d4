"""Real processes for runtime tests: small replica and run scripts, a fast runtime, orphan checks.

Every process a test starts inherits ``MODELYARD_TEST_TAG`` (a fresh uuid per test) through the
environment, grandchildren included, so after each test the whole process table is searched for
that tag: any live process still carrying it is an orphan and fails the test.
"""

from __future__ import annotations

import contextlib
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from _wait import wait_until
from modelyard.runtime import Event, LocalRuntime, SupervisorConfig

# wait_until lives in tests/_wait.py; the runtime tests import it from here.
__all__ = ["FAST", "kinds", "tagged_processes", "wait_until"]

FAST = SupervisorConfig(
    poll_interval_s=0.05,
    health_interval_s=0.1,
    health_timeout_s=0.3,
    health_failures_to_recycle=3,
    stop_grace_s=1.0,
    backoff_base_s=0.2,
    backoff_cap_s=2.0,
    backoff_jitter=0.2,
    stable_after_s=5.0,
)

SCRIPTS = {
    # An HTTP replica: /healthz answers 200 (or hangs forever after HANG_AFTER_S seconds),
    # /env answers the value of the variable named in the query. IGNORE_TERM=1 makes it deaf
    # to SIGTERM so only SIGKILL ends it.
    "server.py": """
        import os, signal, sys, time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        port = int(os.environ["MODELYARD_PORT"])
        hang_after = float(os.environ.get("HANG_AFTER_S", "-1"))
        if os.environ.get("IGNORE_TERM") == "1":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        began = time.monotonic()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/healthz":
                    if 0 <= hang_after < time.monotonic() - began:
                        time.sleep(3600)
                    body = b"ok"
                elif self.path.startswith("/env?"):
                    body = os.environ.get(self.path[5:], "").encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        print(f"serving {os.environ['MODELYARD_REPLICA_ID']} on {port} pid {os.getpid()}")
        print(f"stderr of {os.getpid()}", file=sys.stderr)
        server.serve_forever()
    """,
    # Exits with code 3 after CRASH_AFTER_S seconds (default: at once).
    "crash.py": """
        import os, time
        print(f"crash start pid {os.getpid()}")
        time.sleep(float(os.environ.get("CRASH_AFTER_S", "0")))
        raise SystemExit(3)
    """,
    # Touches 4 MB more memory every 50 ms (80 MB/s) until it is killed.
    "hog.py": """
        import time
        held = []
        print("hog start")
        while True:
            held.append(b"\\x01" * (4 * 1024 * 1024))
            time.sleep(0.05)
    """,
    # Ignores SIGTERM, starts a child that ignores it too (SIG_IGN is inherited across exec),
    # writes the child's pid to CHILD_PID_FILE, then sleeps.
    "stubborn.py": """
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open(os.environ["CHILD_PID_FILE"] + ".tmp", "w") as handle:
            handle.write(str(child.pid))
        os.replace(os.environ["CHILD_PID_FILE"] + ".tmp", os.environ["CHILD_PID_FILE"])
        print(f"stubborn {os.getpid()} child {child.pid}", flush=True)
        time.sleep(3600)
    """,
    # Starts a long-lived child, then exits 0 itself: the child is a leftover to clear.
    "leaver.py": """
        import os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open(os.environ["CHILD_PID_FILE"] + ".tmp", "w") as handle:
            handle.write(str(child.pid))
        os.replace(os.environ["CHILD_PID_FILE"] + ".tmp", os.environ["CHILD_PID_FILE"])
        print("leaving a child behind")
    """,
    "echo.py": """
        import os, sys
        print("out:", os.environ.get("GREETING", "none"))
        print("err: to stderr", file=sys.stderr)
        raise SystemExit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """,
}


@pytest.fixture
def scripts(tmp_path: Path) -> dict[str, list[str]]:
    """argv prefixes (python, script) for each test script, written into a tmp folder."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    argvs = {}
    for name, text in SCRIPTS.items():
        path = folder / name
        path.write_text(textwrap.dedent(text))
        argvs[name.removesuffix(".py")] = [sys.executable, str(path)]
    return argvs


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes (zombies excluded) whose environment carries ``MODELYARD_TEST_TAG=tag``."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("MODELYARD_TEST_TAG") == tag:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def no_orphans(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Tag this test's processes; fail if any of them outlives the test."""
    tag = uuid.uuid4().hex
    monkeypatch.setenv("MODELYARD_TEST_TAG", tag)
    yield tag
    left = tagged_processes(tag)
    for proc in left:  # clean up so one failure does not leak into other tests
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def runtime(no_orphans: str, modelyard_home: Path, events: list[Event]) -> Iterator[LocalRuntime]:
    rt = LocalRuntime(modelyard_home, on_event=events.append, config=FAST)
    yield rt
    rt.stop_all()


def kinds(events: list[Event], replica_id: str | None = None) -> list[str]:
    return [e.kind for e in events if replica_id is None or e.replica_id == replica_id]
