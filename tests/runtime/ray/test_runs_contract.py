"""The runs half of the runtime contract, run against both runtimes: local processes and Ray Jobs.

The same scenarios (exit codes, output in the run's log, the environment and working folder,
timeout, cancel with nothing left running, errors) must hold whichever runtime carries the run.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.runtime import Event, LocalRuntime, RunHandle, RunSpec, RunStatus, Runtime
from modelyard.runtime.ray import RayRuntime

from ..conftest import FAST

RAY = pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])

SCRIPT = """
import os, sys, time
print("greeting:", os.environ.get("GREETING"), "key:", os.environ.get("MODELYARD_API_KEY"))
print("data:", open("data.txt").read().strip())
run_dir = os.path.realpath(os.environ.get("MODELYARD_RUN_DIR", "unset"))
print("run dir is the working folder:", run_dir == os.path.realpath(os.getcwd()))
print("to stderr", file=sys.stderr)
if len(sys.argv) > 1 and sys.argv[1] == "sleep":
    time.sleep(120)
raise SystemExit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


@pytest.fixture(params=["local", RAY])
def both(
    request: pytest.FixtureRequest, tmp_path: Path, events: list[Event]
) -> Iterator[tuple[Runtime, list[Event]]]:
    """Each runtime with the events it reported during this test."""
    if request.param == "local":
        runtime = LocalRuntime(tmp_path / "home", on_event=events.append, config=FAST)
        yield runtime, events
        runtime.stop_all()
        return
    ray_runtime: RayRuntime = request.getfixturevalue("ray_runtime")
    ray_events: list[Event] = request.getfixturevalue("ray_events")
    ray_events.clear()
    yield ray_runtime, ray_events


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "job.py").write_text(SCRIPT)
    (folder / "data.txt").write_text("from the working folder\n")
    return folder


def _spec(project: Path, run_id: str, *args: str, **kwargs: object) -> RunSpec:
    argv = [sys.executable, str(project / "job.py"), *args]
    return RunSpec(run_id, argv, cwd=project, **kwargs)  # type: ignore[arg-type]


def _tagged(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("RUN_TAG") == tag:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_a_run_succeeds_with_its_env_folder_output_and_events(
    both: tuple[Runtime, list[Event]], project: Path
) -> None:
    runtime, events = both
    run_id = f"ok-{uuid.uuid4().hex[:8]}"
    # An experiment's folder (MODELYARD_RUN_DIR, what track_file checks paths against) is the
    # folder the script runs in, on Ray the node's copy of it rather than the server's path.
    env = {
        "GREETING": "bonjour",
        "MODELYARD_API_KEY": "scoped-key",
        "MODELYARD_RUN_DIR": str(project),
    }
    run = runtime.launch_run(_spec(project, run_id, env=env, timeout_s=120))
    assert isinstance(run, RunHandle)
    assert run.wait(120) is RunStatus.SUCCEEDED
    assert run.exit_code == 0
    assert run.duration_ms is not None and run.ended_ms == run.started_ms + run.duration_ms
    lines = list(runtime.read_run_log(run_id))
    assert lines[0].startswith(f"=== modelyard run {run_id} started at 20")
    assert "greeting: bonjour key: scoped-key" in lines
    assert "data: from the working folder" in lines and "to stderr" in lines
    assert "run dir is the working folder: True" in lines
    assert lines[-1].startswith(f"=== modelyard run {run_id} succeeded exit_code=0")
    assert runtime.get_run(run_id) is run
    mine = [e for e in events if e.run_id == run_id]
    assert [e.kind for e in mine] == ["run_started", "run_finished"]
    assert mine[1].details["status"] == "succeeded" and mine[1].details["exit_code"] == 0


def test_a_failing_run_keeps_its_exit_code(
    both: tuple[Runtime, list[Event]], project: Path
) -> None:
    runtime, _ = both
    run = runtime.launch_run(_spec(project, f"fail-{uuid.uuid4().hex[:8]}", "7"))
    assert run.wait(120) is RunStatus.FAILED
    assert run.exit_code == 7
    assert "failed exit_code=7" in run.log_path.read_text()


def test_timeout_and_cancel_stop_the_run_and_leave_nothing_running(
    both: tuple[Runtime, list[Event]], project: Path
) -> None:
    runtime, _ = both
    tag = uuid.uuid4().hex
    began = time.monotonic()
    timed = runtime.launch_run(
        _spec(project, f"slow-{tag[:8]}", "sleep", env={"RUN_TAG": tag}, timeout_s=3)
    )
    cancelled = runtime.launch_run(
        _spec(project, f"cancel-{tag[:8]}", "sleep", env={"RUN_TAG": tag})
    )
    assert timed.wait(60) is RunStatus.TIMED_OUT
    assert 3 <= time.monotonic() - began < 30
    assert cancelled.cancel() is RunStatus.CANCELLED
    assert cancelled.cancel() is RunStatus.CANCELLED  # idempotent
    assert "timed_out" in timed.log_path.read_text()
    assert "cancelled" in cancelled.log_path.read_text()
    deadline = time.monotonic() + 15
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _tagged(tag), "a stopped run left processes behind"


def test_run_errors(both: tuple[Runtime, list[Event]], project: Path) -> None:
    runtime, _ = both
    with pytest.raises(InvalidInput, match="timeout_s=0"):
        runtime.launch_run(_spec(project, "t", timeout_s=0))
    with pytest.raises(InvalidInput, match="run_id='a/b'"):
        runtime.launch_run(_spec(project, "a/b"))
    with pytest.raises(InvalidInput, match="is not an existing folder"):
        runtime.launch_run(RunSpec("t", [sys.executable, "x.py"], cwd=project / "missing"))
    with pytest.raises(NotFound, match="'never'"):
        runtime.get_run("never")
