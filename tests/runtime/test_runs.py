"""Job runs as real process groups: exit codes, logs, timeout, cancel, no leftovers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from _processes import ended
from modelyard.errors import Conflict, InvalidInput, NotFound
from modelyard.runtime import Event, LocalRuntime, RunHandle, RunSpec, RunStatus

from .conftest import FAST, wait_until


def test_run_succeeds_and_keeps_exit_code_times_and_output(
    runtime: LocalRuntime, scripts: dict[str, list[str]], events: list[Event]
) -> None:
    before = int(time.time() * 1000)
    run = runtime.launch_run(RunSpec("ok-1", scripts["echo"], env={"GREETING": "bonjour"}))
    assert isinstance(run, RunHandle)
    assert run.wait(30) is RunStatus.SUCCEEDED
    assert run.exit_code == 0
    assert run.ended_ms is not None and before <= run.started_ms <= run.ended_ms
    assert run.duration_ms == run.ended_ms - run.started_ms
    assert run.log_path == runtime.home / "logs" / "runs" / "ok-1.log"
    lines = list(runtime.read_run_log("ok-1"))
    assert lines[0].startswith("=== modelyard run ok-1 started at 20")  # ISO 8601, UTC
    assert "+00:00 (" in lines[0]
    assert "out: bonjour" in lines and "err: to stderr" in lines
    assert lines[-1].startswith("=== modelyard run ok-1 succeeded exit_code=0")
    finished = [e for e in events if e.kind == "run_finished"]
    assert finished[0].run_id == "ok-1"
    assert finished[0].details == {
        "status": "succeeded",
        "exit_code": 0,
        "duration_ms": run.duration_ms,
    }
    assert [e.kind for e in events] == ["run_started", "run_finished"]
    assert runtime.get_run("ok-1") is run


def test_run_fails_with_its_exit_code_and_a_rerun_appends_to_the_log(
    runtime: LocalRuntime, scripts: dict[str, list[str]]
) -> None:
    run = runtime.launch_run(RunSpec("job", [*scripts["echo"], "7"]))
    assert run.wait(30) is RunStatus.FAILED
    assert run.exit_code == 7
    again = runtime.launch_run(RunSpec("job", scripts["echo"]))
    assert again.wait(30) is RunStatus.SUCCEEDED
    text = again.log_path.read_text()
    assert text.count("=== modelyard run job started") == 2
    assert "failed exit_code=7" in text


@pytest.mark.slow
def test_timeout_kills_a_sigterm_ignoring_run_and_its_child(
    runtime: LocalRuntime, scripts: dict[str, list[str]], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    run = runtime.launch_run(
        RunSpec(
            "slowpoke",
            scripts["stubborn"],
            env={"CHILD_PID_FILE": str(pid_file)},
            timeout_s=1.0,
        )
    )
    wait_until(pid_file.exists, what="child pid file")
    child = int(pid_file.read_text())
    assert not ended(child) and not ended(run.pid)
    assert run.wait(30) is RunStatus.TIMED_OUT
    assert ended(run.pid) and ended(child)
    # SIGTERM was ignored, so SIGKILL came after the grace period (FAST.stop_grace_s).
    assert run.exit_code == -9
    assert run.duration_ms is not None
    assert 1000 + FAST.stop_grace_s * 1000 <= run.duration_ms < 10_000
    assert "timed_out" in run.log_path.read_text()


def test_cancel_stops_the_whole_group(
    runtime: LocalRuntime, scripts: dict[str, list[str]], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    run = runtime.launch_run(
        RunSpec("cancel-me", scripts["stubborn"], env={"CHILD_PID_FILE": str(pid_file)})
    )
    wait_until(pid_file.exists, what="child pid file")
    child = int(pid_file.read_text())
    assert run.status is RunStatus.RUNNING and run.ended_ms is None and run.duration_ms is None
    assert run.cancel() is RunStatus.CANCELLED
    assert ended(run.pid) and ended(child)
    assert run.cancel() is RunStatus.CANCELLED  # idempotent


def test_cancel_after_the_end_keeps_the_real_outcome(
    runtime: LocalRuntime, scripts: dict[str, list[str]]
) -> None:
    run = runtime.launch_run(RunSpec("quick", scripts["echo"]))
    run.wait(30)
    assert run.cancel() is RunStatus.SUCCEEDED


def test_leftover_children_of_a_finished_run_are_cleared(
    runtime: LocalRuntime, scripts: dict[str, list[str]], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    run = runtime.launch_run(
        RunSpec("leaver", scripts["leaver"], env={"CHILD_PID_FILE": str(pid_file)})
    )
    assert run.wait(30) is RunStatus.SUCCEEDED
    assert ended(int(pid_file.read_text()))


def test_follow_a_run_log_until_it_ends(
    runtime: LocalRuntime, tmp_path: Path, scripts: dict[str, list[str]]
) -> None:
    script = tmp_path / "ticker.py"
    script.write_text(
        "import time\nfor i in range(5):\n    print('tick', i)\n    time.sleep(0.1)\n"
    )
    run = runtime.launch_run(RunSpec("ticker", [scripts["echo"][0], str(script)]))
    wait_until(run.log_path.exists, what="log file")
    lines = list(runtime.read_run_log("ticker", follow=True))
    assert [line for line in lines if line.startswith("tick")] == [f"tick {i}" for i in range(5)]
    assert run.status is RunStatus.SUCCEEDED


def test_stop_all_cancels_running_runs(
    no_orphans: str, modelyard_home: Path, scripts: dict[str, list[str]], tmp_path: Path
) -> None:
    rt = LocalRuntime(modelyard_home, config=FAST)
    pid_file = tmp_path / "child.pid"
    run = rt.launch_run(RunSpec("r", scripts["stubborn"], env={"CHILD_PID_FILE": str(pid_file)}))
    wait_until(pid_file.exists, what="child pid file")
    rt.stop_all(grace_s=0.2)
    assert run.status is RunStatus.CANCELLED


def test_run_errors(runtime: LocalRuntime, scripts: dict[str, list[str]]) -> None:
    with pytest.raises(InvalidInput, match="timeout_s=0"):
        runtime.launch_run(RunSpec("t", scripts["echo"], timeout_s=0))
    with pytest.raises(InvalidInput, match="run_id='a/b'"):
        runtime.launch_run(RunSpec("a/b", scripts["echo"]))
    with pytest.raises(InvalidInput, match="non-empty list"):
        runtime.launch_run(RunSpec("t", "python -c pass"))  # a string, not a list
    run = runtime.launch_run(
        RunSpec("long", [scripts["echo"][0], "-c", "import time; time.sleep(60)"])
    )
    with pytest.raises(Conflict, match="'long' is still running"):
        runtime.launch_run(RunSpec("long", scripts["echo"]))
    run.cancel()
    with pytest.raises(InvalidInput, match="could not start '/no/such/program'"):
        runtime.launch_run(RunSpec("t", ["/no/such/program"]))
    with pytest.raises(NotFound, match="'never'"):
        runtime.get_run("never")
    with pytest.raises(NotFound):
        list(runtime.read_run_log("never"))
