"""A build with requirements on Ray Serve: the replica's runtime env carries them as Ray's ``pip``
field and the node that hosts it installs them (``runtime/ray/_env.py``). No package index: the
requirements name a wheel made here, in a folder of the snapshot (``--find-links wheels``)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from _async import run
from _wheel import make_wheel
from modelyard.errors import InvalidInput, Unavailable
from modelyard.runtime import ReplicaSpec, ReplicaStatus
from modelyard.runtime.ray import RayRuntime
from modelyard.runtime.ray._env import REQUIREMENTS_ENV, WORKING_DIR_VAR, pip_field, pip_lines
from modelyard.serving.gateway.pool import DeploymentPool, PoolSettings, ReplicaEndpoint
from modelyard.store.base import Identity

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pydantic.*"),
]


SOURCE = """
import tinymy

def predict(x):
    return {"value": tinymy.VALUE, "where": tinymy.__file__}
"""
REQUIREMENTS = "--no-index\n--find-links wheels  # the wheel is in the snapshot\ntinymy==0.1\n"
INSTALL_DEADLINE_S = 300.0
IDENTITY = Identity("crn:model/m", "crn:build/b", "crn:deployment/d")


@pytest.fixture
def long_deadline(serve_runtime: RayRuntime) -> Iterator[None]:
    """Room for the install: Ray makes the environment by copying the node's virtualenv, then
    pip installs into the copy. The test nodes' virtualenv is small (``tests/_ray.py``,
    ``node_venv``): a copy of the project's whole one (1.7 GB) took 20 s on an idle machine and
    over 60 s while other tests loaded its 2 cores."""
    half = serve_runtime.replicas_half
    deadline, half.deploy_timeout_s = half.deploy_timeout_s, INSTALL_DEADLINE_S
    yield
    half.deploy_timeout_s = deadline


def snapshot_with(folder: Path, requirements: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "predict.py").write_text(SOURCE)
    (folder / "requirements.txt").write_text(requirements)
    make_wheel(folder / "wheels")
    return folder


def spec(snapshot: Path, replica_id: str) -> ReplicaSpec:
    argv = [sys.executable, "-m", "modelyard.serving.replica", "--snapshot", str(snapshot)]
    argv += ["--file", "predict.py", "--function", "predict", "--socket", "/unused/s.sock"]
    argv += ["--replica-id", replica_id]
    env = {REQUIREMENTS_ENV: "requirements.txt"}
    return ReplicaSpec("dep-req", replica_id, argv, cwd=snapshot, env=env, cpus=0.5)


def test_relative_paths_into_the_snapshot_are_anchored_to_the_nodes_copy(tmp_path: Path) -> None:
    folder = snapshot_with(tmp_path / "snap", REQUIREMENTS + "-r requirements.txt\nnumpy\n")
    lines = pip_lines((folder / "requirements.txt").read_text())
    assert lines[:3] == ["--no-index", "--find-links wheels", "tinymy==0.1"]
    field = pip_field(lines, folder, "gcs://_ray_pkg_abc.zip")
    assert field["packages"] == [
        "# paths in the snapshot gcs://_ray_pkg_abc.zip",
        "--no-index",
        f"--find-links {WORKING_DIR_VAR}/wheels",
        "tinymy==0.1",
        f"-r {WORKING_DIR_VAR}/requirements.txt",
        "numpy",  # not a path: no such file in the snapshot
    ]
    plain = pip_field(["numpy==2.*", "https://example.org/x.whl"], folder, "gcs://x.zip")
    assert plain["packages"] == ["numpy==2.*", "https://example.org/x.whl"]  # hash: text only


def test_a_new_build_with_the_same_wheels_keeps_its_environment(tmp_path: Path) -> None:
    """Requirements naming only wheel folders are keyed by those files, not by the rest of the
    snapshot: a new build's code reuses the node's environment, a changed wheel does not."""
    one = snapshot_with(tmp_path / "one", REQUIREMENTS)
    two = snapshot_with(tmp_path / "two", REQUIREMENTS)
    (two / "predict.py").write_text(SOURCE + "# the next build\n")
    lines = pip_lines(REQUIREMENTS)
    first = pip_field(lines, one, "gcs://_ray_pkg_one.zip")
    assert first == pip_field(lines, two, "gcs://_ray_pkg_two.zip")
    assert first["packages"][0].startswith("# files the paths name sha256:"), first
    assert first["packages"][1:] == [
        "--no-index",
        f"--find-links {WORKING_DIR_VAR}/wheels",
        "tinymy==0.1",
    ]
    make_wheel(two / "wheels", version="0.2")
    assert pip_field(lines, two, "gcs://_ray_pkg_two.zip") != first
    wheel = f"./wheels/{next((one / 'wheels').iterdir()).name}"  # an archive: keyed by it alone
    assert pip_field([wheel], one, "gcs://_ray_pkg_one.zip") == pip_field([wheel], two, "x")


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.usefixtures("long_deadline")
def test_a_build_with_requirements_is_installed_on_the_node_and_answers(
    serve_runtime: RayRuntime, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"  # the same-run baseline: a replica without requirements
    plain.mkdir()
    (plain / "predict.py").write_text("def predict(x):\n    return x\n")
    started = time.monotonic()
    serve_runtime.start_replicas([dataclasses.replace(spec(plain, "rq0"), env={})])
    baseline = time.monotonic() - started
    serve_runtime.stop_replica("rq0")
    snapshot = snapshot_with(tmp_path / "snap", REQUIREMENTS)
    started = time.monotonic()
    states = serve_runtime.start_replicas([spec(snapshot, "rq1")])
    took = time.monotonic() - started
    assert [s.status for s in states] == [ReplicaStatus.HEALTHY]

    async def go() -> dict[str, object]:
        pool = DeploymentPool(IDENTITY, PoolSettings(request_timeout_s=30))
        pool.add_endpoint(ReplicaEndpoint("rq1", serve_runtime.replica_url("rq1"), capacity=4))
        try:
            exchange = await pool.call("/invoke", b'{"a": 1}')
            assert exchange.status == 200, exchange.payload
            output: dict[str, object] = orjson.loads(exchange.payload)["output"]
            return output
        finally:
            await pool.close()

    output = run(go())
    assert output["value"] == "from the wheel"
    # Installed in the node's virtualenv for the pip field, not imported from the snapshot.
    assert "/runtime_resources/pip/" in str(output["where"]), output
    print(
        f"first deploy with requirements (installed on the node): {took:.1f}s; "
        f"without requirements: {baseline:.1f}s"
    )
    serve_runtime.stop_replica("rq1")


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.usefixtures("long_deadline")
def test_requirements_that_cannot_be_installed_fail_the_deploy_with_pips_message(
    serve_runtime: RayRuntime, tmp_path: Path
) -> None:
    """Ray's agent tries a runtime env 3 times (each clones the node's virtualenv and runs pip)
    before Serve hears of the failure."""
    snapshot = snapshot_with(tmp_path / "snap", "--no-index\nno-such-package-my==9.9\n")
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        serve_runtime.start_replicas([spec(snapshot, "rq2")])
    took = time.monotonic() - started
    print(f"failed install reported in {took:.1f}s: {caught.value.message}")
    message = caught.value.message
    assert "rq2" in message and "no-such-package-my" in message, message
    assert "No matching distribution" in message, message
    assert took < INSTALL_DEADLINE_S - 5, took  # not the deadline: pip's failure ends it
    assert "rq2" not in {s.replica_id for s in serve_runtime.replicas()}


@pytest.mark.ray
@pytest.mark.slow
def test_a_missing_requirements_file_is_refused_plainly(
    serve_runtime: RayRuntime, tmp_path: Path
) -> None:
    snapshot = snapshot_with(tmp_path / "snap", "")
    (snapshot / "requirements.txt").unlink()
    asked = dataclasses.replace(spec(snapshot, "rq3"))
    with pytest.raises(InvalidInput) as caught:
        serve_runtime.start_replicas([asked])
    assert "requirements.txt" in caught.value.message and "rq3" in caught.value.message
    assert "rq3" not in {s.replica_id for s in serve_runtime.replicas()}
