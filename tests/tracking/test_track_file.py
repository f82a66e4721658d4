"""``track_file`` and ``track_metric`` in an experiment run: what is recorded, what is refused.

An experiment run is what the runner makes of ``modelyard experiments run``: ``MODELYARD_RUN_ID``,
``MODELYARD_RUN_DIR`` (the working folder, the current folder) and ``MODELYARD_EXPERIMENT=1``.
Embedded runs write ``<home>/runs/<id>/files.jsonl``; remote runs POST to the server (a loopback
HTTP server here records the wire).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelyard
import modelyard.cdsw
from modelyard.errors import InvalidInput, PayloadTooLarge
from modelyard.tracking import files
from modelyard.tracking._env import EXPERIMENT_ENV, RUN_DIR_ENV
from tracking.conftest import LoopbackServer

RUN = "0190f0b2-6a2b-7c3d-8e4f-0000000000aa"


@pytest.fixture(autouse=True)
def once_again() -> None:
    files._warned = False


@pytest.fixture
def run_dir(tmp_path: Path, modelyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An experiment run's environment, embedded, with its working folder as cwd."""
    work = tmp_path / "runs" / RUN / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MODELYARD_RUN_ID", RUN)
    monkeypatch.setenv(RUN_DIR_ENV, str(work))
    monkeypatch.setenv(EXPERIMENT_ENV, "1")
    return work


def _lines(home: Path, name: str) -> list[dict[str, Any]]:
    path = home / "runs" / RUN / name
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_outside_an_experiment_nothing_is_kept_and_one_warning_says_so(
    tmp_path: Path, modelyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.pkl").write_bytes(b"x")
    monkeypatch.setenv("MODELYARD_RUN_ID", RUN)  # a plain job run is not an experiment
    with pytest.warns(modelyard.NotRecordedWarning, match=r"'model.pkl' was not kept.*once"):
        modelyard.track_file("model.pkl")
    modelyard.track_file("other.pkl")  # once only, and a missing file is no error there
    assert not (modelyard_home / "runs").exists()
    with pytest.raises(InvalidInput, match="track_file needs a file path"):
        modelyard.track_file(42)  # type: ignore[arg-type]


def test_an_experiment_keeps_paths_relative_to_its_folder(
    run_dir: Path, modelyard_home: Path
) -> None:
    (run_dir / "model.pkl").write_bytes(b"model")
    (run_dir / "out").mkdir()
    (run_dir / "out" / "report.csv").write_text("a,b\n")
    (run_dir / "link.pkl").symlink_to(run_dir / "model.pkl")  # a link inside stays inside
    modelyard.track_file("model.pkl")
    modelyard.track_file(Path("out") / "report.csv")
    modelyard.track_file(str(run_dir / "out" / "report.csv"))  # absolute, same file
    modelyard.cdsw.track_file("link.pkl")
    lines = _lines(modelyard_home, "files.jsonl")
    assert [line["path"] for line in lines] == [
        "model.pkl",
        "out/report.csv",
        "out/report.csv",
        "model.pkl",
    ]
    assert all(isinstance(line["trackedMs"], int) for line in lines)


def test_bad_files_are_refused_naming_the_file(
    run_dir: Path, tmp_path: Path, modelyard_home: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    (run_dir / "escape.txt").symlink_to(outside)
    (run_dir / "folder").mkdir()
    os.mkfifo(run_dir / "pipe")
    with open(run_dir / "huge.bin", "wb") as fh:  # sparse: no 64 MiB written
        fh.truncate(files.MAX_RUN_FILE_BYTES + 1)
    with pytest.raises(InvalidInput, match=r"no such file 'missing.pkl'"):
        modelyard.track_file("missing.pkl")
    with pytest.raises(InvalidInput, match=r"'\.\./\.\./\.\./secret.txt' resolves to .*outside"):
        modelyard.track_file("../../../secret.txt")
    with pytest.raises(InvalidInput, match=r"'escape.txt' resolves to .*secret.txt, outside"):
        modelyard.track_file("escape.txt")
    with pytest.raises(InvalidInput, match=r"'folder' is not a regular file \(a folder\)"):
        modelyard.track_file("folder")
    with pytest.raises(InvalidInput, match=r"'pipe' is not a regular file \(a pipe\)"):
        modelyard.track_file("pipe")
    with pytest.raises(PayloadTooLarge, match=r"'huge.bin' is 67108865 bytes, over .*67108864"):
        modelyard.track_file("huge.bin")
    assert not (modelyard_home / "runs" / RUN / "files.jsonl").exists()  # nothing half-made


def test_experiment_metrics_are_scalars_numpy_converted(
    run_dir: Path, modelyard_home: Path
) -> None:
    modelyard.track_metric("r2 score", np.float64(0.93))
    modelyard.track_metrics({"epochs": np.int64(12), "converged": np.bool_(True), "opt": "adam"})
    for bad in ([1, 2], {"a": 1}, None, np.array([1.0, 2.0])):
        with pytest.raises(InvalidInput, match=r"metric 'bad' of an experiment run.*scalars"):
            modelyard.track_metric("bad", bad)
    lines = _lines(modelyard_home, "metrics.jsonl")
    assert [line["metrics"] for line in lines] == [
        {"r2 score": 0.93},
        {"epochs": 12, "converged": True, "opt": "adam"},
    ]


def test_a_job_run_that_is_no_experiment_still_takes_any_json_value(
    modelyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_RUN_ID", RUN)
    modelyard.track_metric("per class", {"setosa": [np.float32(0.5)]})
    assert _lines(modelyard_home, "metrics.jsonl")[0]["metrics"] == {"per class": {"setosa": [0.5]}}


def test_a_remote_experiment_posts_the_path_with_its_key(
    run_dir: Path,
    http_server: Callable[..., LoopbackServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = http_server(lambda method, path, body: (204, None))
    monkeypatch.setenv("MODELYARD_URL", server.url)
    monkeypatch.setenv("MODELYARD_API_KEY", "myk_runkey")
    (run_dir / "model.pkl").write_bytes(b"model")
    modelyard.track_file("model.pkl")
    (seen,) = server.requests
    assert (seen.method, seen.path, seen.body) == (
        "POST",
        f"/api/v1/runs/{RUN}/files",
        {"path": "model.pkl"},
    )
    assert seen.headers["Authorization"] == "Bearer myk_runkey"
