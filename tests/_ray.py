"""A real two-node Ray cluster on loopback for the Ray tests: a head and one worker.

Each node is one ``ray start --block`` process (the project venv's Ray, run from a small
virtualenv of the nodes' own over it: ``node_venv``) in a session of its own, with its own ports,
a short private temp dir and token auth (``RAY_AUTH_MODE=token``, a temporary token file: never
``~/.ray/auth_token``). Every process the cluster starts carries
``MODELYARD_RAY_TEST_TAG`` in its environment, so teardown finds and kills them by PID (never
``ray stop``, which kills every Ray process on the host) and ``leftovers()`` proves none is left.

``ray_cluster`` is session-scoped: starting the two nodes costs about 15 s and 1.5 GiB, so every
Ray test of a session shares one cluster. Tests that kill the worker (``kill_worker``) bring it
back with ``restart_worker`` before they end.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import venv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from modelyard.runtime.ports import free_port

__all__ = ["RayTestCluster", "ray_cluster", "ray_env", "start_cluster"]

TAG_VAR = "MODELYARD_RAY_TEST_TAG"
# Ray's logical CPUs per node: two nodes of 2 let a test place work on both.
NODE_CPUS = 2
OBJECT_STORE_BYTES = 100 * 1024 * 1024
START_TIMEOUT_S = 90.0


def ray_env(token_path: Path) -> dict[str, str]:
    """The variables a process needs to talk to the test cluster (token auth, no stale address)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}


@dataclass
class RayTestCluster:
    """A running test cluster. ``address`` is the head's GCS (``127.0.0.1:PORT``)."""

    address: str
    dashboard_url: str
    token_path: Path
    temp_dir: Path
    tag: str
    head_node_id: str = ""
    worker_node_id: str = ""
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _worker_argv: list[str] = field(default_factory=list)
    _env: dict[str, str] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return self.token_path.read_text().strip()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get_json(self, path: str, token: bool = True) -> object:
        """GET ``path`` on the dashboard (with the token unless told not to)."""
        request = urllib.request.Request(
            self.dashboard_url + path, headers=self.headers() if token else {}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def alive_nodes(self) -> list[dict[str, object]]:
        """Nodes the head counts alive (state API), with ``node_id`` and ``is_head_node``."""
        body = self.get_json("/api/v0/nodes?limit=100&detail=true")
        rows = body["data"]["result"]["result"]  # type: ignore[index]
        return [row for row in rows if row.get("state") == "ALIVE"]

    def processes(self) -> list[psutil.Process]:
        """Live processes (zombies excluded) of this cluster: the ones carrying its tag."""
        return tagged(self.tag)

    def worker_raylet(self) -> psutil.Process | None:
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                if proc.name() == "raylet" and str(self.temp_dir / "worker") in " ".join(
                    proc.cmdline()
                ):
                    return proc
        return None

    def kill_worker(self) -> None:
        """SIGKILL the worker node's raylet (a node failure); its ``ray start`` then ends the
        rest of the node."""
        raylet = self.worker_raylet()
        assert raylet is not None, "the worker node has no raylet to kill"
        raylet.kill()
        proc = self._procs.pop("worker", None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            _kill_group(proc)

    def head_processes(self) -> list[psutil.Process]:
        """Every process of the head node: ``ray start`` and what it runs (GCS, raylet,
        dashboard, agents, and the workers its raylet started: Serve's controller, actors)."""
        try:
            head = psutil.Process(self._procs["head"].pid)
            return [head, *head.children(recursive=True)]
        except psutil.Error:
            return []

    def pause_head(self) -> list[psutil.Process]:
        """SIGSTOP every process of the head node (a frozen or cut-off head machine: its ports
        still accept connections, nothing answers); ``resume_head`` with what this returns."""
        paused = self.head_processes()
        for proc in paused:
            with contextlib.suppress(psutil.Error):
                proc.suspend()
        return paused

    @staticmethod
    def resume_head(paused: list[psutil.Process]) -> None:
        for proc in paused:
            with contextlib.suppress(psutil.Error):
                proc.resume()

    def restart_worker(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the worker node again and wait until the head counts it (a new node id) alive."""
        old = self.worker_node_id
        self._procs["worker"] = _spawn(self._worker_argv, self._env, self.temp_dir / "worker.out")
        self._wait_nodes(2, timeout_s, old={old})

    def _wait_nodes(self, count: int, timeout_s: float, old: set[str] | None = None) -> None:
        """Wait until ``count`` nodes are alive, none of them one of the ``old`` node ids."""
        deadline = time.monotonic() + timeout_s
        nodes: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, KeyError, ValueError, urllib.error.URLError):
                nodes = [n for n in self.alive_nodes() if n["node_id"] not in (old or ())]
                if len(nodes) >= count:
                    for node in nodes:
                        if node.get("is_head_node"):
                            self.head_node_id = str(node["node_id"])
                        else:
                            self.worker_node_id = str(node["node_id"])
                    return
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"ray start of the {name} node exited with {proc.returncode}: "
                        f"{self._out(name)}"
                    )
            time.sleep(0.5)
        raise RuntimeError(
            f"the test Ray cluster had {len(nodes)} alive nodes after {timeout_s} s, not {count}"
        )

    def _out(self, name: str) -> str:
        path = self.temp_dir / f"{name}.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """Kill every process of the cluster (its tag) and remove its temp dir."""
        for proc in self._procs.values():
            _kill_group(proc)
        self._procs.clear()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = self.processes()
            if not left:
                break
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def tagged(tag: str) -> list[psutil.Process]:
    """Live processes (zombies excluded) whose environment has ``MODELYARD_RAY_TEST_TAG=tag``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            if proc.environ().get(TAG_VAR) == tag:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _spawn(argv: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with open(out, "ab") as handle:
        return subprocess.Popen(
            argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the ``ray start`` process group, SIGKILL after 10 s; reap it."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait_s)
            return


def _node_argv(ray: str, temp_dir: Path, name: str, ports: dict[str, int]) -> list[str]:
    return [
        ray,
        "start",
        "--block",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={NODE_CPUS}",
        "--num-gpus=0",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--temp-dir={temp_dir / name}",
        f"--node-manager-port={ports['node_manager']}",
        f"--object-manager-port={ports['object_manager']}",
        f"--dashboard-agent-listen-port={ports['agent_http']}",
        f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
        f"--metrics-export-port={ports['metrics']}",
        f"--runtime-env-agent-port={ports['runtime_env']}",
    ]


def _ports() -> dict[str, int]:
    names = ("node_manager", "object_manager", "agent_http", "agent_grpc", "metrics", "runtime_env")
    return {name: free_port() for name in names}


def node_venv(folder: Path) -> Path:
    """Make the virtualenv the test nodes run Ray from in ``folder``; its ``bin`` folder.

    A node whose Python is a virtualenv makes every pip runtime env by copying that virtualenv
    whole (``ray/_private/runtime_env/virtualenv_utils.py``): the project's is 1.7 GB, 15 s to
    copy on an idle machine and over 60 s under load, and Ray's agent makes a failing env 3
    times. So the nodes' virtualenv holds no package of its own: a ``.pth`` file adds the
    project virtualenv's site-packages (and runs its ``.pth`` files: the editable Modelyard)
    after its own. Ray still clones a virtualenv (the same code path), of a few files; pip
    installs a runtime env's requirements into the clone's own site-packages, ahead of the
    project's, as into a clone of the whole project virtualenv.
    """
    venv.EnvBuilder(symlinks=True, with_pip=False).create(folder)
    project = sysconfig.get_path("purelib")
    own = Path(sysconfig.get_path("purelib", vars={"base": str(folder)}))
    (own / "_modelyard_project_venv.pth").write_text(f"import site; site.addsitedir({project!r})\n")
    bin_dir = folder / "bin"
    ray = bin_dir / "ray"
    ray.write_text(
        f"#!{bin_dir / 'python'}\nimport sys\nfrom ray.scripts.scripts import main\n"
        "sys.exit(main())\n"
    )
    ray.chmod(0o755)
    return bin_dir


def start_cluster(timeout_s: float = START_TIMEOUT_S) -> RayTestCluster:
    """Start a head and a worker on loopback and wait until both are alive."""
    # A short path: Ray's Unix sockets live under the temp dir (108-byte limit).
    temp_dir = Path(tempfile.mkdtemp(prefix="myr-", dir="/tmp"))
    node_bin = node_venv(temp_dir / "venv")
    ray = str(node_bin / "ray")
    token_path = temp_dir / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(ray_env(token_path))
    env[TAG_VAR] = tag
    # On SIGTERM a node first asks the GCS to drain it, waiting up to 30 s; the teardown
    # SIGTERMs the GCS with it (and SIGKILLs after 10 s): draining only added 10 s a node.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    # Job entrypoints run ``python``: the node's, as on a node where Modelyard's Ray is installed.
    env["PATH"] = os.pathsep.join(
        [str(node_bin), str(Path(sys.executable).parent), env.get("PATH", "")]
    )
    gcs_port, dashboard_port, client_port = free_port(), free_port(), free_port()
    head_argv = [
        *_node_argv(ray, temp_dir, "head", _ports()),
        "--head",
        f"--port={gcs_port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={client_port}",
    ]
    address = f"127.0.0.1:{gcs_port}"
    worker_argv = [*_node_argv(ray, temp_dir, "worker", _ports()), f"--address={address}"]
    cluster = RayTestCluster(
        address=address,
        dashboard_url=f"http://127.0.0.1:{dashboard_port}",
        token_path=token_path,
        temp_dir=temp_dir,
        tag=tag,
        _worker_argv=worker_argv,
        _env=env,
    )
    try:
        cluster._procs["head"] = _spawn(head_argv, env, temp_dir / "head.out")
        cluster._wait_nodes(1, timeout_s)
        cluster._procs["worker"] = _spawn(worker_argv, env, temp_dir / "worker.out")
        cluster._wait_nodes(2, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayTestCluster]:
    """One two-node cluster for the whole session; every process of it killed at the end."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
    left = cluster.processes()
    assert not left, f"Ray processes left behind: {[(p.pid, p.name()) for p in left]}"
