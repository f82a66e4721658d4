"""The files a job names, against the snapshot its runs execute in: the ignore check used at
creation agrees with what the snapshot keeps, a job's ``requirements`` give its runs their own
environment (built once and reused, as for model builds), and a monitor job runs the installed
monitor runner even in a project that ignores ``.modelyard/``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from builds.conftest import tiny_package  # noqa: F401 (fixture)
from modelyard.builds import snapshot_project
from modelyard.builds.snapshot import ignore_reason
from modelyard.registry import RunState
from modelyard.specs import JobSpec

from .conftest import World

USES_PACKAGE = """
import sys

import modelyard
import modelyard_tinypkg

print("value", modelyard_tinypkg.VALUE, "job", modelyard.current_run().job, flush=True)
print("python", sys.executable, flush=True)
"""


def test_the_ignore_check_agrees_with_the_snapshot(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    files = {
        ".gitignore": "# generated\n.modelyard/\n*.log\nbuild/\n",
        ".modelyardignore": "secret_*.py\n!keep.log\n",
        "job.py": "",
        "keep.log": "",
        "other.log": "",
        "secret_key.py": "",
        ".modelyard/run_monitor.py": "",
        "build/out.py": "",
        "sub/.gitignore": "local.py\n",
        "sub/local.py": "",
        "sub/shared.py": "",
        "sub/deep/other.log": "",
    }
    for rel, text in files.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    kept = set(snapshot_project(project, tmp_path / "snaps").files)
    verdicts = {rel: ignore_reason(project, rel) for rel in files}
    assert {rel for rel, reason in verdicts.items() if reason is None} == kept
    assert verdicts[".modelyard/run_monitor.py"] == "pattern '.modelyard/' in .gitignore"
    assert verdicts["secret_key.py"] == "pattern 'secret_*.py' in .modelyardignore"
    assert verdicts["sub/local.py"] == "pattern 'local.py' in sub/.gitignore"
    assert verdicts["sub/deep/other.log"] == "pattern '*.log' in .gitignore"
    assert ignore_reason(project, ".venv/bin/x.py") == (
        "folder '.venv/' is always left out of snapshots"
    )


@pytest.mark.slow
def test_runs_use_the_jobs_requirements_environment_reused_while_they_stay_the_same(
    world: World,
    tiny_package: Path,  # noqa: F811
) -> None:
    script = world.script("uses.py", USES_PACKAGE)
    (world.project / "requirements.txt").write_text(f"--no-index\n{tiny_package}\n")
    world.job("with-env", script, requirements="requirements.txt")
    world.job("without-env", script)
    scheduler = world.scheduler()

    def run(name: str) -> tuple[RunState, str]:
        started = scheduler.trigger(name)
        assert scheduler.runner.wait_idle(120)
        done = world.registry.get_run(started.id)
        return done.state, Path(done.log_path or "").read_text()

    state, first = run("with-env")
    assert state == RunState.SUCCEEDED, first
    assert "value 42 job with-env" in first
    assert "Successfully installed modelyard" in first.replace("_", "-")
    env_python = next(line for line in first.splitlines() if line.startswith("python "))
    assert env_python.split(" ", 1)[1].startswith(str(world.home / "builds" / "envs"))

    # Same requirements up to comments and order: the next run reuses the environment.
    (world.project / "requirements.txt").write_text(f"# helper\n{tiny_package}\n--no-index\n")
    state, second = run("with-env")
    assert state == RunState.SUCCEEDED, second
    assert "reusing environment" in second and "Successfully installed" not in second
    assert env_python in second

    # Without requirements the run uses the base interpreter, which lacks the package.
    state, base = run("without-env")
    assert state == RunState.FAILED
    assert "No module named 'modelyard_tinypkg'" in base
    assert f"using the base environment {sys.executable}" in base


def test_a_monitor_job_runs_the_installed_runner_in_a_project_ignoring_modelyard(
    world: World,
) -> None:
    (world.project / ".gitignore").write_text(".modelyard/\n")
    (world.project / "watch.yaml").write_text(textwrap.dedent("name: watch\n"))
    job = world.registry.create_job(
        JobSpec(
            name="watch",
            project=str(world.project),
            script=None,
            monitor="watch.yaml",
            manual=True,
            args=["--json"],
        )
    )
    assert job.script is None and job.monitor == "watch.yaml"
    scheduler = world.scheduler()
    started = scheduler.trigger("watch")
    assert scheduler.runner.wait_idle(60)
    done = world.registry.get_run(started.id)
    log = Path(done.log_path or "").read_text()
    # The spec is incomplete: the monitor runner itself refuses it (exit 2), which shows it ran
    # from the package with the spec and arguments, not a launcher lost to the ignore rules.
    assert done.state == RunState.FAILED and done.exit_code == 2, log
    assert "error:" in log and "not a file in the project snapshot" not in log
    assert not (world.project / ".modelyard").exists()
