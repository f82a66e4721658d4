"""``modelyard cluster`` and ``GET /api/v1/cluster`` against a real server on a loopback socket,
and the dashboard's Cluster page over the same app: the one local node, its CPUs, memory and
GPUs, what runs there, and what waits for GPUs and why.

This machine has no GPU: the server's runtime gets a fake device list at the discovery boundary
(``LocalRuntime.resources.gpus``); the runs are real processes that receive the devices.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from _cli import run_main
from _live import admin_key, serve_app
from modelyard.runtime import RunSpec, free_port
from modelyard.runtime.resources import GpuDevice, GpuPool
from modelyard.server import ServerConfig, create_app

FAKE = [GpuDevice("0", "Tesla T4", 16 * 1024**3)]


@contextmanager
def serving(home: Path) -> Iterator[tuple[str, Any]]:
    """A real server in a thread (``_live.serve_app``), with its app to reach the runtime."""
    port = free_port()
    app = create_app(ServerConfig(home=home, port=port, inject_env=False, jobs=False))
    with serve_app(app, port) as url:
        yield url, app


def _sign_in(client: httpx.Client, key: str) -> None:
    page = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, page.text
    answer = client.post("/ui/login", data={"csrf": token.group(1), "api_key": key, "next": "/ui/"})
    assert answer.status_code == 303, answer.text


def test_cluster_shows_the_node_its_gpus_what_runs_and_what_waits(
    modelyard_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(modelyard_home) as (url, app):
        runtime = app.state.services.runtime
        runtime.resources.gpus = GpuPool(FAKE)  # the injected device list: no GPU here
        key = admin_key(modelyard_home)
        monkeypatch.setenv("MODELYARD_URL", url)
        monkeypatch.setenv("MODELYARD_API_KEY", key)
        sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
        holder = runtime.launch_run(RunSpec("holder", sleep, gpus=1, cpus=1))
        waiter = runtime.launch_run(RunSpec("waiter", sleep, gpus=1))
        try:
            view = httpx.get(
                url + "/api/v1/cluster", headers={"Authorization": f"Bearer {key}"}
            ).json()
            assert view["runtime"] == "local"
            (node,) = view["nodes"]
            assert node["id"] == "local" and node["alive"] and node["cpus"] >= 1
            assert node["cpu_limit"] in ("cgroup", "affinity") and node["memory_bytes"] > 0
            assert node["gpus"] == [
                {
                    "id": "0",
                    "name": "Tesla T4",
                    "memory_bytes": 16 * 1024**3,
                    "held_by": "run holder",
                }
            ]
            placed = [(p["kind"], p["name"], p["gpu_ids"], p["cpus"]) for p in node["placed"]]
            assert placed == [("run", "holder", ["0"], 1.0)]
            assert node["requested"] == {"cpus": 1.0, "memory_bytes": 0, "gpus": 1}
            (waiting,) = view["waiting"]
            assert waiting["name"] == "waiter" and waiting["node"] is None
            assert (
                "1 GPU but 0 of 1 are free; GPU 0 (Tesla T4) is held by run holder"
                in (waiting["waiting_for"])
            )

            capsys.readouterr()  # what the server printed when it started
            code, out, err = run_main(capsys, "cluster", "--json")
            assert code == 0, err
            assert orjson.loads(out) == view
            code, out, err = run_main(capsys, "cluster")
            assert code == 0, err
            lines = out.splitlines()
            assert lines[0].startswith("node\taddress\talive\tcpus")  # piped: plain rows
            assert "0 Tesla T4 (run holder)" in lines[1]
            assert any(ln.startswith("(waiting)\trun\t-\twaiter") for ln in lines)

            with httpx.Client(base_url=url, timeout=30) as browser:
                _sign_in(browser, key)
                page = browser.get("/ui/cluster")
                assert page.status_code == 200, page.text
                assert 'href="/ui/cluster"' in page.text  # in the header's pages
                assert "Tesla T4" in page.text and "run holder" in page.text
                assert "waiter" in page.text and "is held by run holder" in page.text

            unauthenticated = httpx.get(url + "/api/v1/cluster")
            assert unauthenticated.status_code == 401
        finally:
            waiter.cancel()
            holder.cancel()
