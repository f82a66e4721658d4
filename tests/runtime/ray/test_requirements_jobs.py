"""A job run with requirements on Ray: the job's runtime env carries them as Ray's ``pip`` field,
the node that runs it installs them, and ``python`` is that environment's. No package index:
the requirements name a wheel made here, in a folder of the run's snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from _wheel import make_wheel
from modelyard.runtime import RunSpec, RunStatus
from modelyard.runtime.ray import RayRuntime
from modelyard.runtime.ray._env import REQUIREMENTS_ENV

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pydantic.*"),
]

SCRIPT = "import sys, tinymy\nprint('value:', tinymy.VALUE)\nprint('python:', sys.executable)\n"
# What the runner's argv starts with for a job with requirements: its environment on the server.
SERVER_ENV_PYTHON = "/srv/modelyard/builds/envs/0123abcd/bin/python"


def folder_with(path: Path, requirements: str) -> Path:
    path.mkdir()
    (path / "job.py").write_text(SCRIPT)
    (path / "requirements.txt").write_text(requirements)
    make_wheel(path / "wheels")
    return path


def test_a_run_with_requirements_installs_them_on_its_node(
    ray_runtime: RayRuntime, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path / "snap", "--no-index\n--find-links wheels\ntinymy==0.1\n")
    run = ray_runtime.launch_run(
        RunSpec(
            "req-job",
            [SERVER_ENV_PYTHON, str(folder / "job.py")],
            cwd=folder,
            env={REQUIREMENTS_ENV: "requirements.txt"},
        )
    )
    assert run.wait(240) is RunStatus.SUCCEEDED, run.log_path.read_text()
    lines = run.log_path.read_text().splitlines()
    assert "value: from the wheel" in lines, lines
    python = next(line for line in lines if line.startswith("python:"))
    assert "/runtime_resources/pip/" in python, python


def test_a_run_whose_requirements_cannot_be_installed_fails_with_pips_message(
    ray_runtime: RayRuntime, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path / "snap", "--no-index\nno-such-package-my==9.9\n")
    run = ray_runtime.launch_run(
        RunSpec(
            "req-bad",
            [SERVER_ENV_PYTHON, str(folder / "job.py")],
            cwd=folder,
            env={REQUIREMENTS_ENV: "requirements.txt"},
        )
    )
    assert run.wait(300) is RunStatus.FAILED, run.log_path.read_text()
    text = run.log_path.read_text()
    assert "pip could not install its requirements" in text, text[-3000:]
    assert "No matching distribution found for no-such-package-my==9.9" in text, text[-3000:]
