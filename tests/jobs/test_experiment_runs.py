"""Experiment runs carried out by the job runner with real processes, on SQLite and PostgreSQL:
the writable working folder (a copy of the snapshot, removed after), the run's environment and
code version, metrics, and the files it tracked kept in the database, or failed with the reason
(gone at the end, swapped for a link out of the folder), each noted in the run log."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from modelyard.builds import snapshot_project
from modelyard.registry import RunState
from modelyard.specs.experiment import ExperimentSpec

from .conftest import World

FIT = """
import json, os, sys
from pathlib import Path
import modelyard

depth = int(sys.argv[2])
Path("out").mkdir()
Path("out/model.txt").write_text(f"a tree of depth {depth}")
modelyard.track_file("out/model.txt")
for step in range(3):
    modelyard.track_metric("loss", 1.0 / (step + 1))
modelyard.track_metrics({"depth": depth, "tag": "baseline"})
Path("env.json").write_text(json.dumps({
    "cwd": os.getcwd(),
    "run_dir": os.environ["MODELYARD_RUN_DIR"],
    "experiment": os.environ["MODELYARD_EXPERIMENT"],
    "threads": os.environ.get("OMP_NUM_THREADS"),
}))
modelyard.track_file("env.json")
Path("gone.txt").write_text("deleted before the end")
modelyard.track_file("gone.txt")
os.remove("gone.txt")
Path("escape.txt").write_text("replaced by a link out of the folder")
modelyard.track_file("escape.txt")
os.remove("escape.txt")
os.symlink(os.environ["OUTSIDE"], "escape.txt")
"""


def _experiment(world: World, **fields: Any) -> Any:
    spec = ExperimentSpec(script="fit.py", project=str(world.project), **fields)
    return world.registry.experiments.create(spec, None, "alice")


def test_an_experiment_runs_in_a_writable_copy_and_keeps_its_files(
    db_world: World, tmp_path: Path
) -> None:
    world = db_world
    outside = tmp_path / "outside.txt"
    outside.write_text("not the run's")
    world.script("fit.py", FIT)
    job = _experiment(
        world, args=["--depth", "3"], cpus=2, env={"OUTSIDE": str(outside)}, label="depth 3"
    )
    scheduler = world.scheduler(server_url=None)  # embedded: metrics and files through files
    run = scheduler.trigger(job.id)
    assert scheduler.runner.wait_idle(60)
    done = world.registry.experiments.get(run.id)
    log = Path(done.run.log_path or "").read_text()
    assert done.run.state is RunState.SUCCEEDED, log
    digest = snapshot_project(str(world.project), world.home / "builds" / "snapshots").digest
    assert done.code_digest == digest
    assert done.metrics == {"loss": 1.0 / 3, "depth": 3, "tag": "baseline"}
    states = {f.path: f.state for f in done.files}
    assert states == {
        "env.json": "kept",
        "escape.txt": "failed",
        "gone.txt": "failed",
        "out/model.txt": "kept",
    }
    model = world.registry.experiments.file_data(run.id, "out/model.txt")
    assert model == b"a tree of depth 3"
    env = json.loads(world.registry.experiments.file_data(run.id, "env.json"))
    work = world.home / "runs" / run.id.rsplit("/", 1)[-1] / "work"
    assert env == {
        "cwd": str(work),
        "run_dir": str(work),
        "experiment": "1",
        "threads": "2",
    }
    errors = {f.path: f.error for f in done.files if f.error}
    assert "does not exist when the run ended" in errors["gone.txt"]
    assert "outside the run's working folder" in errors["escape.txt"]
    assert "kept file out/model.txt (17 bytes" in log
    assert "file 'escape.txt' was not kept" in log
    assert not work.exists()  # the working folder goes once the files are kept
    assert sorted(os.listdir(world.project)) == ["fit.py"]  # the project is never written


def test_a_failed_experiment_still_keeps_what_it_tracked(db_world: World) -> None:
    world = db_world
    world.script(
        "fit.py",
        """
        from pathlib import Path
        import modelyard
        Path("partial.csv").write_text("epoch,loss\\n1,0.9\\n")
        modelyard.track_file("partial.csv")
        modelyard.track_metric("loss", 0.9)
        raise SystemExit("diverged")
        """,
    )
    job = _experiment(world)
    scheduler = world.scheduler(server_url=None)
    run = scheduler.trigger(job.id)
    assert scheduler.runner.wait_idle(60)
    done = world.registry.experiments.get(run.id)
    assert done.run.state is RunState.FAILED and done.run.exit_code == 1
    assert [(f.path, f.state) for f in done.files] == [("partial.csv", "kept")]
    assert done.metrics == {"loss": 0.9}
    assert world.registry.list_jobs() == []  # the experiment's job is not one of the jobs


def test_a_crashed_servers_experiment_folder_is_collected_and_removed_at_start(
    world: World,
) -> None:
    """A run left 'running' by a server that died mid-run: the next start marks it failed, keeps
    the files it had tracked from the folder the crash left, and removes the folder."""
    job = _experiment(world, args=[])
    run = world.registry.create_run(job.id, world.clock(), 1, "manual")
    run = world.registry.update_run(run.id, state="running", log_path=str(world.home / "r.log"))
    work = world.home / "runs" / run.id.rsplit("/", 1)[-1] / "work"
    work.mkdir(parents=True)
    (work / "model.txt").write_text("half-trained")
    world.registry.experiments.track_file(run.id, "model.txt")
    stale = world.home / "runs" / "0f0e0d0c-0000-4000-8000-000000000000" / "work"
    stale.mkdir(parents=True)  # a deleted run's folder: simply removed

    scheduler = world.scheduler()
    [marked] = scheduler.recover()

    done = world.registry.experiments.get(run.id)
    assert marked.id == run.id and done.run.state is RunState.FAILED
    assert {f.path: f.state for f in done.files} == {"model.txt": "kept"}
    assert world.registry.experiments.file_data(run.id, "model.txt") == b"half-trained"
    assert not work.exists() and not stale.exists()
    assert "kept file model.txt" in (world.home / "r.log").read_text()
