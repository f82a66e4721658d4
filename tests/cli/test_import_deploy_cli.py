"""``modelyard models deploy --onnx/--sklearn`` through the real CLI against one real server
process (shared by the module): only the model file travels when no ``--project-dir`` is given
(the build's snapshot holds it and the generated entry, nothing else of the folder it lay in),
a ``.skops`` file answers through the gateway as the estimator does in-process, a pickle is
refused without ``--trust-pickle`` (naming the flag, no model made) and served with it, a model
outside ``--project-dir`` is refused before anything is sent, an ONNX file kept by an experiment
run is served with ``--from-run`` though it is not on this machine, and ``models builds`` shows
where each build came from."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import skops.io
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from _server import ServerProcess
from modelyard.builds.imported import ENTRY_FILE
from modelyard.cli import main

pytestmark = pytest.mark.slow

FRAME, Y = load_iris(return_X_y=True, as_frame=True)
FRAME.columns = [c.removesuffix(" (cm)").replace(" ", "_") for c in FRAME.columns]
X = FRAME.to_numpy()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder as users have them: the models (ONNX of a pipeline fitted on arrays; a
    .skops and a pickle of one fitted on a table with column names) among data and notes."""
    root = tmp_path_factory.mktemp("work")
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, Y)
    (root / "iris.onnx").write_bytes(to_onnx(pipe, X[:1].astype(np.float32)).SerializeToString())
    table = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(FRAME, Y)
    skops.io.dump(table, root / "model.skops")
    (root / "models").mkdir()
    (root / "models" / "model.pkl").write_bytes(pickle.dumps(table))
    (root / "train.csv").write_text(FRAME.to_csv(index=False))
    (root / "notes.md").write_text("# iris\n")
    (root / "predict.py").write_text("def predict(args):\n    return args\n")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("import-cli") / "home"
    proc = ServerProcess(home, settings={"MODELYARD_PASSWORD_HASH": "fast"}).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(autouse=True)
def _cli_finds_the_server(
    server: ServerProcess, modelyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI finds the shared server through its home's server.json and admin.key."""
    monkeypatch.setenv("MODELYARD_HOME", str(server.home))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``modelyard ARGS`` through ``main``; stderr with its whitespace made single spaces."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, " ".join(captured.err.split())


def ok_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, (args, out, err)
    return orjson.loads(out)


def gateway(server: ServerProcess, key: str, request: Any) -> Any:
    answer = httpx.post(
        f"{server.base}/model",
        params={"accessKey": key},
        json={"request": request},
        headers=server.auth,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["response"]


def snapshot_files(server: ServerProcess, build: dict[str, Any]) -> set[str]:
    root = server.home / "builds" / "snapshots" / build["digest"]
    assert root.is_dir(), (root, build)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def assert_no_model(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, err = cli(capsys, "models", "show", name)
    assert code == 2 and f"model {name!r} is not known" in err, (name, out, err)


def test_onnx_file_alone_and_a_model_outside_the_project_dir(
    server: ServerProcess,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(folder)  # a relative path, in a folder holding much else
    deployed = ok_json(capsys, "models", "deploy", "iris-onnx", "--onnx", "iris.onnx")
    assert deployed["ok"] is True and deployed["batch_function"] == "predict_batch", deployed
    source = {"kind": "onnx", "path": "iris.onnx", "inputs": ["X"]}
    [build] = ok_json(capsys, "models", "builds", "iris-onnx")
    assert build["source"] == source and build["file"] == ENTRY_FILE
    assert build["crn"] == deployed["build"]["crn"]
    assert snapshot_files(server, build) == {"iris.onnx", ENTRY_FILE}  # only the model went
    row = X[120].tolist()
    answer = gateway(server, deployed["access_key"], {"X": row})
    pipe = pickle.loads((folder / "models" / "model.pkl").read_bytes())
    assert answer["output_label"] == int(pipe.predict(FRAME.iloc[[120]])[0])
    code, out, _ = cli(capsys, "models", "builds", "iris-onnx")  # the table says it in words
    assert code == 0 and "onnx iris.onnx" in out

    # --project-dir names the folder sent: a model outside it is refused here, nothing sent.
    inner = folder / "models"
    code, out, err = cli(
        capsys, "models", "deploy", "outside", "--project-dir", str(inner), "--onnx", "iris.onnx"
    )
    assert code == 2 and out == "", (out, err)
    assert "--onnx 'iris.onnx' is not inside --project-dir" in err and str(inner) in err, err
    assert "leave --project-dir out" in err
    assert_no_model(capsys, "outside")
    # Without --project-dir only the file travels: a requirements file could not go with it.
    code, out, err = cli(
        capsys, "models", "deploy", "outside", "--onnx", "iris.onnx", "--requirements", "notes.md"
    )
    assert code == 2 and out == "", (out, err)
    assert "--requirements 'notes.md' given with --onnx but without --project-dir" in err, err
    assert "accepted: --project-dir DIR" in err
    assert_no_model(capsys, "outside")


def test_skops_file_answers_as_the_estimator_does_in_process(
    server: ServerProcess, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "model.skops"
    deployed = ok_json(capsys, "models", "deploy", "iris-skops", "--sklearn", str(path))
    assert deployed["ok"] is True, deployed
    estimator: Pipeline = skops.io.load(path)
    for i in (0, 60, 120):
        row = FRAME.iloc[[i]]
        answer = gateway(server, deployed["access_key"], row.iloc[0].to_dict())
        assert answer["prediction"] == int(estimator.predict(row)[0])
        expected = dict(
            zip(map(str, estimator.classes_), estimator.predict_proba(row)[0], strict=True)
        )
        assert answer["probabilities"] == pytest.approx(expected)
    [build] = ok_json(capsys, "models", "builds", "iris-skops")
    assert build["source"] == {"kind": "sklearn", "path": "model.skops", "format": "skops"}
    assert snapshot_files(server, build) == {"model.skops", ENTRY_FILE}


def test_a_pickle_needs_trust_pickle(
    server: ServerProcess, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkl = str(folder / "models" / "model.pkl")
    code, _, err = cli(capsys, "models", "deploy", "legacy", "--sklearn", pkl)
    assert code == 2, err
    assert "'model.pkl' is a pickle file" in err and "--trust-pickle" in err, err
    assert_no_model(capsys, "legacy")
    assert "legacy" not in {m["name"] for m in ok_json(capsys, "models", "list")}

    # Trusted, from inside --project-dir: the folder travels, the model by its path in it.
    deployed = ok_json(
        capsys, "models", "deploy", "legacy", "--project-dir", str(folder),
        "--sklearn", pkl, "--trust-pickle",
    )  # fmt: skip
    assert deployed["ok"] is True, deployed
    estimator = pickle.loads((folder / "models" / "model.pkl").read_bytes())
    answer = gateway(server, deployed["access_key"], FRAME.iloc[70].to_dict())
    assert answer["prediction"] == int(estimator.predict(FRAME.iloc[[70]])[0])
    [build] = ok_json(capsys, "models", "builds", "legacy")
    assert build["source"] == {
        "kind": "sklearn",
        "path": "models/model.pkl",
        "format": "pickle",
        "trustPickle": True,
    }
    assert {"train.csv", "notes.md", "models/model.pkl", ENTRY_FILE} <= snapshot_files(
        server, build
    )


TRAIN = """
import shutil

import modelyard

shutil.copy("source.onnx", "trained.onnx")  # stands for a training script's output
modelyard.track_file("trained.onnx")
"""


def test_onnx_kept_by_a_run_and_not_on_this_machine(
    server: ServerProcess,
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = tmp_path / "train"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "source.onnx").write_bytes((folder / "iris.onnx").read_bytes())
    run = ok_json(capsys, "experiments", "run", "--project-dir", str(project), "train.py", "--wait")
    assert run["state"] == "succeeded" and run["files"][0]["state"] == "kept", run
    monkeypatch.chdir(tmp_path)  # no trained.onnx here: the run's file is meant
    deployed = ok_json(
        capsys,
        "models",
        "deploy",
        "trained",
        "--from-run",
        run["uuid"][:8],
        "--onnx",
        "trained.onnx",
    )
    assert deployed["ok"] is True, deployed
    [build] = ok_json(capsys, "models", "builds", "trained")
    assert build["source"] == {
        "run": run["id"],
        "files": ["trained.onnx"],
        "kind": "onnx",
        "path": "trained.onnx",
        "inputs": ["X"],
    }
    assert snapshot_files(server, build) == {"trained.onnx", ENTRY_FILE}
    pipe = pickle.loads((folder / "models" / "model.pkl").read_bytes())
    answer = gateway(server, deployed["access_key"], {"X": X[100].tolist()})
    assert answer["output_label"] == int(pipe.predict(FRAME.iloc[[100]])[0])
    code, out, _ = cli(capsys, "models", "builds", "trained")
    assert code == 0 and f"onnx trained.onnx, run {run['uuid'][:8]}" in out
