"""``modelyard server`` names the dashboard: in --help and, at start, its URL (a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from modelyard.cli import cli
from modelyard.runtime import free_port


def test_help_mentions_the_dashboard() -> None:
    result = CliRunner().invoke(cli, ["server", "--help"])
    assert result.exit_code == 0 and "The dashboard is at /ui/" in result.output


def test_start_prints_the_dashboard_url(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("modelyard")),
            "server",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        url = f"http://127.0.0.1:{port}/ui/"
        assert first.startswith(f"Dashboard: {url} "), first
        deadline = time.monotonic() + 60
        while True:  # and the URL it printed does serve the sign-in page
            try:
                answer = httpx.get(url, follow_redirects=True, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "server never came up"
                time.sleep(0.2)
        assert answer.status_code == 200 and 'type="password"' in answer.text
    finally:
        server.terminate()
        server.wait(timeout=60)
        server.stdout.close()
