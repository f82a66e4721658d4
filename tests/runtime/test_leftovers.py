"""Groups left running by a runtime that was killed are found and killed by the next one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _processes import ended
from modelyard.errors import Conflict
from modelyard.runtime import Event, LocalRuntime, ReplicaSpec, RunSpec
from modelyard.runtime.leftovers import record, records_root, replica_record

from .conftest import FAST, tagged_processes, wait_until

# A server process that starts a replica and a run, prints their pids, then dies by SIGKILL
# without stopping anything: exactly what a crashed server leaves behind.
ABANDON = """
import os, signal, sys, time
from modelyard.runtime import LocalRuntime, ReplicaSpec, RunSpec
home, crash, stubborn, pid_file = sys.argv[1:5]
rt = LocalRuntime(home)
rt.start_replicas([ReplicaSpec("dep", "r1", [sys.executable, crash], env={"CRASH_AFTER_S": "60"})])
run = rt.launch_run(RunSpec("run1", [sys.executable, stubborn], env={"CHILD_PID_FILE": pid_file}))
while not os.path.exists(pid_file):
    time.sleep(0.02)
print(rt.replica("r1").pid, run.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_groups_of_a_killed_runtime_are_reaped_by_the_next_one(
    no_orphans: str, modelyard_home: Path, scripts: dict[str, list[str]], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(ABANDON),
            str(modelyard_home),
            scripts["crash"][1],
            scripts["stubborn"][1],
            str(pid_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == -9, out.stderr
    replica_pid, run_pid = map(int, out.stdout.split())
    child_pid = int(pid_file.read_text())
    assert all(not ended(pid) for pid in (replica_pid, run_pid, child_pid))
    assert len(list(records_root(modelyard_home).rglob("*.json"))) == 2

    events: list[Event] = []
    with LocalRuntime(modelyard_home, on_event=events.append, config=FAST) as rt:
        killed = rt.reap_leftovers(grace_s=0.3)
        assert sorted(body["pgid"] for body in killed) == sorted([replica_pid, run_pid])
        run_body = next(body for body in killed if body["pgid"] == run_pid)
        assert sorted(run_body["pids"]) == sorted([run_pid, child_pid])
        assert [e.kind for e in events] == ["leftover_killed", "leftover_killed"]
        wait_until(
            lambda: all(ended(p) for p in (replica_pid, run_pid, child_pid)),
            timeout_s=5,
            what="leftovers gone",
        )
        assert list(records_root(modelyard_home).rglob("*.json")) == []
        assert rt.reap_leftovers() == []  # nothing left the second time
    assert tagged_processes(no_orphans) == []


def test_a_recorded_group_without_its_marker_is_left_alone(
    runtime: LocalRuntime, modelyard_home: Path
) -> None:
    # Same pgid as recorded, but not started with the recorded token: perhaps a reused number.
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        path = replica_record(modelyard_home, "dep", "r9")
        record(path, stranger.pid, {"MODELYARD_GROUP_TOKEN": "not-this-one"}, ["x"])
        (records_root(modelyard_home) / "runs").mkdir(parents=True)
        (records_root(modelyard_home) / "runs" / "broken.json").write_text("{not json")
        assert runtime.reap_leftovers(grace_s=0.1) == []
        assert not ended(stranger.pid)
        assert list(records_root(modelyard_home).rglob("*.json")) == []
    finally:
        stranger.kill()
        stranger.wait()


def test_records_follow_the_life_of_replicas_and_runs(
    runtime: LocalRuntime, modelyard_home: Path, scripts: dict[str, list[str]]
) -> None:
    runtime.start_replicas(
        [ReplicaSpec("dep", "r1", scripts["crash"], env={"CRASH_AFTER_S": "60"})]
    )
    path = replica_record(modelyard_home, "dep", "r1")
    assert path.is_file()
    with pytest.raises(Conflict, match="before this runtime starts anything"):
        runtime.reap_leftovers()
    runtime.stop_replica("r1", grace_s=0.5)
    assert not path.exists()
    run = runtime.launch_run(RunSpec("run1", scripts["echo"]))
    run.wait(30)
    assert list(records_root(modelyard_home).rglob("*.json")) == []
