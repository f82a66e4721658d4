"""Experiments in the registry, on a SQLite file, SQLite in memory and PostgreSQL: the one-off
job of kind 'experiment' hidden from job lists, reading runs by prefix with their metrics and
files, the experiment metric limits, tracking, keeping and failing files with their limits, and
files going with their run (prune) and their job (delete)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from modelyard.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from modelyard.registry import (
    MAX_EXPERIMENT_METRIC_KEYS,
    MAX_RUN_FILE_BYTES,
    MAX_RUN_FILES,
    Registry,
    Run,
)
from modelyard.registry import _experiments as experiments_module
from modelyard.specs import JobSpec
from modelyard.specs.experiment import ExperimentSpec
from modelyard.store import sqlaccess

from .conftest import T0, MsClock

PROJECT = "/srv/projects/iris"


def start(registry: Registry, label: str | None = "depth 3", **fields: Any) -> Run:
    spec = ExperimentSpec(
        script="fit.py", project=PROJECT, args=["--depth", "3"], label=label, **fields
    )
    job = registry.experiments.create(spec, None, "alice")
    run = registry.create_run(job.id, T0, 1, "manual")
    return registry.update_run(run.id, state="running")


def test_an_experiment_is_a_hidden_one_off_job_with_its_label_and_resources(
    registry: Registry,
) -> None:
    registry.create_job(JobSpec(name="nightly", project=PROJECT, script="m.py", manual=True))
    run = start(registry, cpus=2, memory="512M", gpus=1, accelerator="nvidia-a100")
    job = registry.get_job(run.job_id)
    assert job.kind == "experiment" and job.name.startswith("experiment-")
    assert len(job.name) == len("experiment-") + 12
    assert job.schedule.manual and job.retries == 0 and job.script == "fit.py"
    assert [j.name for j in registry.list_jobs()] == ["nightly"]  # hidden from job lists
    with pytest.raises(NotFound) as missing:
        registry.get_job("no-such-job")
    assert job.name not in missing.value.message  # nor named among the known jobs
    shown = registry.experiments.get(run.id)
    assert shown.label == "depth 3" and shown.created_by == "alice"
    assert shown.resources == {
        "cpus": 2.0,
        "memory": 512 * 1024 * 1024,
        "gpus": 1,
        "accelerator": "nvidia-a100",
    }
    assert shown.job.args == ("--depth", "3") and shown.run.id == run.id


def test_runs_are_named_by_uuid_or_prefix_and_a_jobs_run_is_not_an_experiment(
    registry: Registry,
) -> None:
    run = start(registry)
    uuid = run.id.rsplit("/", 1)[-1]
    for ref in (run.id, uuid, uuid[:8], uuid[:8].upper()):
        assert registry.experiments.get(ref).run.id == run.id
    job = registry.create_job(JobSpec(name="nightly", project=PROJECT, script="m.py", manual=True))
    other = registry.create_run(job.id, T0, 1, "manual")
    with pytest.raises(NotFound, match="is a run of job 'nightly', not an experiment run"):
        registry.experiments.get(other.id)
    with pytest.raises(NotFound, match="does not exist"):
        registry.experiments.get("crn:modelyard:run/00000000-0000-4000-8000-000000000000")
    with pytest.raises(InvalidInput, match="too short"):
        registry.experiments.get("ab")


def test_metrics_last_value_history_list_newest_first_and_compare(
    registry: Registry, clock: MsClock
) -> None:
    first = start(registry, label="a")
    registry.add_run_metrics(first.id, {"loss": 0.5})
    clock.advance(10)
    registry.add_run_metrics(first.id, {"loss": 0.25, "accuracy": 0.9, "tag": "x", "ok": True})
    clock.advance(10)
    second = start(registry, label="b")
    registry.add_run_metrics(second.id, {"loss": 0.75})
    shown = registry.experiments.get(first.id)
    assert shown.metrics == {"loss": 0.25, "accuracy": 0.9, "tag": "x", "ok": True}
    assert shown.history["loss"] == [(T0, 0.5), (T0 + 10, 0.25)]
    listed = registry.experiments.list()
    assert [e.run.id for e in listed] == [second.id, first.id]
    assert listed[1].metrics["loss"] == 0.25 and listed[1].history == {}
    assert [e.run.id for e in registry.experiments.list(limit=1)] == [second.id]
    compared = registry.experiments.compare([second.id, first.id])
    assert [e.label for e in compared] == ["b", "a"]
    assert compared[1].history["accuracy"] == [(T0 + 10, 0.9)]
    with pytest.raises(InvalidInput, match="limit=0"):
        registry.experiments.list(limit=0)


def test_experiment_metrics_are_scalars_within_their_limits(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = start(registry)
    with pytest.raises(InvalidInput, match=r"'curve' has the value \[1, 2\] \(list\)"):
        registry.add_run_metrics(run.id, {"curve": [1, 2]})
    registry.add_run_metrics(run.id, {f"k{i}": i for i in range(MAX_EXPERIMENT_METRIC_KEYS)})
    with pytest.raises(InvalidInput, match="at most 100 distinct keys"):
        registry.add_run_metrics(run.id, {"one-more": 1})
    registry.add_run_metrics(run.id, {"k0": 2})  # a known key takes more values
    monkeypatch.setattr(experiments_module, "MAX_EXPERIMENT_METRIC_VALUES", 102)
    with pytest.raises(InvalidInput, match="at most 102 values"):
        registry.add_run_metrics(run.id, {"k1": 1, "k2": 2})
    assert len(registry.run_metrics(run.id)) == 101  # nothing of a refused batch
    # A job's run keeps any JSON value, as before.
    job = registry.create_job(JobSpec(name="nightly", project=PROJECT, script="m.py", manual=True))
    other = registry.create_run(job.id, T0, 1, "manual")
    registry.add_run_metrics(other.id, {"curve": [1, 2]})


def test_files_are_tracked_kept_or_failed_and_read_back(registry: Registry) -> None:
    run = start(registry)
    tracked = registry.experiments.track_file(run.id, "./out/model.pkl")
    assert (tracked.path, tracked.state, tracked.size) == ("out/model.pkl", "tracked", None)
    assert registry.experiments.track_file(run.id, "out/model.pkl") == tracked  # idempotent
    data = b"\x00model bytes\xff" * 100
    kept = registry.experiments.keep_file(run.id, "out/model.pkl", data, tracked.tracked_ms)
    assert kept.state == "kept" and kept.size == len(data)
    assert kept.sha256 == hashlib.sha256(data).hexdigest() and kept.kept_ms == T0
    failed = registry.experiments.fail_file(run.id, "gone.csv", "it does not exist")
    assert failed.state == "failed" and failed.error == "it does not exist"
    assert [f.path for f in registry.experiments.files(run.id)] == ["gone.csv", "out/model.pkl"]
    assert registry.experiments.file_data(run.id[-36:], "out/model.pkl") == data
    with pytest.raises(NotFound, match=r"'gone.csv' .* was not kept \(failed: it does not"):
        registry.experiments.file_data(run.id, "gone.csv")
    with pytest.raises(NotFound, match=r"was not tracked by the run; the run kept: out/model\.pkl"):
        registry.experiments.file_data(run.id, "other.bin")
    shown = registry.experiments.get(run.id)
    assert [f.state for f in shown.files] == ["failed", "kept"]


@pytest.mark.parametrize("path", ["../secret", "/etc/passwd", "a/../../b", "", "."])
def test_a_file_path_must_stay_in_the_run_folder(registry: Registry, path: str) -> None:
    run = start(registry)
    with pytest.raises(InvalidInput, match="run file path"):
        registry.experiments.track_file(run.id, path)
    assert registry.experiments.files(run.id) == []


def test_file_limits_and_a_finished_run(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = start(registry)
    with pytest.raises(PayloadTooLarge, match="at most 67108864 bytes"):
        registry.experiments.keep_file(run.id, "big.bin", b"x" * (MAX_RUN_FILE_BYTES + 1))
    monkeypatch.setattr(experiments_module, "MAX_RUN_FILES_TOTAL_BYTES", 10)
    registry.experiments.keep_file(run.id, "a.bin", b"x" * 6)
    with pytest.raises(PayloadTooLarge, match="would bring the run's kept files to 12 bytes"):
        registry.experiments.keep_file(run.id, "b.bin", b"x" * 6)
    registry.experiments.keep_file(run.id, "a.bin", b"y" * 8)  # replacing a file counts once
    for i in range(MAX_RUN_FILES - 1):
        registry.experiments.track_file(run.id, f"f{i}.txt")
    with pytest.raises(InvalidInput, match="at most 100 files per run"):
        registry.experiments.track_file(run.id, "one-too-many.txt")
    registry.update_run(run.id, state="succeeded", exit_code=0)
    with pytest.raises(Conflict, match="is succeeded; files are tracked while the run is running"):
        registry.experiments.track_file(run.id, "f0.txt")


def test_files_go_with_their_run_and_their_job(registry: Registry, clock: MsClock) -> None:
    pruned = start(registry)
    registry.experiments.keep_file(pruned.id, "model.pkl", b"old")
    registry.update_run(pruned.id, state="succeeded", exit_code=0)
    kept = start(registry)
    registry.experiments.keep_file(kept.id, "model.pkl", b"new")
    clock.advance(1_000)
    registry.prune_runs(T0 + 500)
    with pytest.raises(NotFound):
        registry.experiments.get(pruned.id)
    assert registry.experiments.file_data(kept.id, "model.pkl") == b"new"
    registry.delete_job(kept.job_id)
    with pytest.raises(NotFound):
        registry.experiments.files(kept.id)
    assert registry.experiments.list() == []
    with sqlaccess.reading(registry.store) as cur:
        cur.execute("SELECT COUNT(*) FROM run_files")
        assert cur.fetchone()[0] == 0


def test_a_finished_experiment_is_deleted_with_its_job_metrics_and_files(
    registry: Registry,
) -> None:
    run = start(registry)
    registry.add_run_metrics(run.id, {"loss": 0.5})
    registry.experiments.keep_file(run.id, "model.pkl", b"bytes")
    with pytest.raises(Conflict, match="is running; cancel it first"):
        registry.experiments.delete(run.id)
    registry.update_run(run.id, state="cancelled")
    assert registry.experiments.delete(run.id[-36:]).id == run.id
    with pytest.raises(NotFound):
        registry.get_job(run.job_id)
    assert registry.experiments.list() == []


def test_a_code_digest_is_recorded_on_the_run(registry: Registry) -> None:
    run = start(registry)
    registry.experiments.set_code_digest(run.id, "ab" * 32)
    assert registry.get_run(run.id).code_digest == "ab" * 32
    assert registry.experiments.get(run.id).code_digest == "ab" * 32


def test_the_spec_refuses_what_an_experiment_cannot_run() -> None:
    with pytest.raises(InvalidInput, match="script=None"):
        ExperimentSpec(script=None, project=PROJECT)
    with pytest.raises(InvalidInput, match="'MODELYARD_RUN_DIR' is set by Modelyard"):
        ExperimentSpec(script="fit.py", project=PROJECT, env={"MODELYARD_RUN_DIR": "/x"})
    with pytest.raises(InvalidInput, match="cpus=0 is not accepted"):
        ExperimentSpec(script="fit.py", project=PROJECT, cpus=0)
    with pytest.raises(InvalidInput, match="project='relative' is not accepted"):
        ExperimentSpec(script="fit.py", project="relative")
    with pytest.raises(InvalidInput, match="project is missing"):
        ExperimentSpec(script="fit.py", upload="u1").job_spec("experiment-0")
