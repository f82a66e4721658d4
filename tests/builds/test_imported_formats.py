"""ONNX and scikit-learn imports: the planners' refusals (each naming the value and what is
accepted), staging (entry written, run files in, nothing left on failure), the runtime loaders
against the library called directly, and one real build of a staged ONNX model."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.builds import build
from modelyard.builds.imported import ENTRY_FILE, ImportRequest, discard, stage
from modelyard.builds.imported.onnx import plan_onnx
from modelyard.builds.imported.onnx_model import OnnxModel
from modelyard.builds.imported.sklearn import plan_sklearn
from modelyard.builds.imported.sklearn_model import SklearnModel
from modelyard.errors import InvalidInput

X, Y = load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A folder holding the same iris pipeline as .onnx, .skops and .pkl, and a forest whose
    .skops holds a type skops does not trust by default."""
    folder = tmp_path_factory.mktemp("models")
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, Y)
    (folder / "iris.onnx").write_bytes(to_onnx(pipe, X[:1].astype(np.float32)).SerializeToString())
    skops.io.dump(pipe, folder / "iris.skops")
    (folder / "iris.pkl").write_bytes(pickle.dumps(pipe))
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, Y)
    skops.io.dump(forest, folder / "forest.skops")
    return {"folder": folder, "pipe": pipe}


def test_onnx_plan_checks_the_example_against_the_inputs(models: dict[str, Any]) -> None:
    folder = models["folder"]
    plan = plan_onnx(folder, "iris.onnx")
    assert plan.example == {"X": [0, 0, 0, 0]}  # one row of zeros in the input's shape
    assert plan.batch_function == "predict_batch"
    assert plan.source == {"kind": "onnx", "path": "iris.onnx", "inputs": ["X"]}
    with pytest.raises(InvalidInput, match=r"example keys \['petal'\].*\['X'\]"):
        plan_onnx(folder, "iris.onnx", {"petal": [1, 2, 3, 4]})
    with pytest.raises(InvalidInput, match=r"'missing.onnx' is not a file.*iris.onnx"):
        plan_onnx(folder, "missing.onnx")
    with pytest.raises(InvalidInput, match=r"'iris.skops' does not end in .onnx"):
        plan_onnx(folder, "iris.skops")
    (folder / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidInput, match=r"'broken.onnx' is not a model onnxruntime can load"):
        plan_onnx(folder, "broken.onnx")


def test_pickles_need_the_trust_flag_and_skops_types_must_be_listed(
    models: dict[str, Any],
) -> None:
    folder = models["folder"]
    with pytest.raises(InvalidInput, match=r"'iris.pkl' is a pickle file.*--trust-pickle"):
        plan_sklearn(folder, "iris.pkl")
    trusted = plan_sklearn(folder, "iris.pkl", trust_pickle=True)
    assert trusted.source == {
        "kind": "sklearn",
        "path": "iris.pkl",
        "format": "pickle",
        "trustPickle": True,
    }
    assert plan_sklearn(folder, "iris.skops").source["format"] == "skops"
    tree = "sklearn.tree._tree.Tree"
    with pytest.raises(
        InvalidInput, match=f"does not trust by default: {tree}.*--trust-type {tree}"
    ):
        plan_sklearn(folder, "forest.skops")
    plan = plan_sklearn(folder, "forest.skops", trusted_types=[tree])
    assert plan.source["trustedTypes"] == [tree]
    assert repr([tree]) in plan.entry_source  # the replica loads with exactly that list
    with pytest.raises(InvalidInput, match=r"applies to .skops files only"):
        plan_sklearn(folder, "iris.pkl", trust_pickle=True, trusted_types=[tree])


def test_the_loaders_answer_what_the_library_answers(models: dict[str, Any]) -> None:
    folder, pipe = models["folder"], models["pipe"]
    onnx = OnnxModel(folder / "iris.onnx")
    sk = SklearnModel(folder / "iris.skops")
    rows = X[[0, 60, 120]]
    expected = pipe.predict(rows).tolist()
    one = onnx.predict({"X": rows[0].tolist()})
    assert one["output_label"] == expected[0]
    assert set(one["output_probability"]) == {"0", "1", "2"}  # map keys as JSON text
    batch = onnx.predict_batch([{"X": r.tolist()} for r in rows] + [{"X": rows.tolist()}])
    assert [b["output_label"] for b in batch[:3]] == expected
    assert [r["output_label"] for r in batch[3]] == expected  # several rows in one request
    answers = sk.predict_batch([{"X": r.tolist()} for r in rows])
    assert [a["prediction"] for a in answers] == expected
    probs = pipe.predict_proba(rows[:1])[0]
    assert sk.predict({"X": rows[0].tolist()})["probabilities"] == pytest.approx(
        {str(c): p for c, p in enumerate(probs)}
    )
    with pytest.raises(ValueError, match=r"missing \['X'\], unknown \['x'\]; expected.*X"):
        onnx.predict({"x": rows[0].tolist()})
    with pytest.raises(ValueError, match="not accepted; expected"):
        sk.predict({"features": [1, 2, 3, 4]})


def test_staging_writes_the_entry_and_run_files_and_leaves_nothing_on_failure(
    models: dict[str, Any], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    request = ImportRequest(
        model_format="onnx",
        model_path="iris.onnx",
        run="crn:modelyard:run/1",
        run_files={"out/metrics.json": b"{}"},
    )
    staged = stage(models["folder"], home, request)
    try:
        assert (staged.folder / ENTRY_FILE).is_file()
        assert (staged.folder / "out/metrics.json").read_bytes() == b"{}"
        assert staged.file == ENTRY_FILE and staged.batch_function == "predict_batch"
        assert staged.source["run"] == "crn:modelyard:run/1"
        assert staged.source["files"] == ["out/metrics.json"]
        assert staged.source["kind"] == "onnx"
    finally:
        discard(staged)
    assert not staged.folder.exists()
    with pytest.raises(InvalidInput, match=r"'iris.pkl' is a pickle file"):
        stage(models["folder"], home, ImportRequest(model_format="sklearn", model_path="iris.pkl"))
    assert list((home / "builds" / "staging").iterdir()) == []  # nothing half-made
    assert not (models["folder"] / ENTRY_FILE).exists()  # the source folder is untouched


def test_a_staged_onnx_model_builds_and_passes_its_smoke_test(
    models: dict[str, Any], tmp_path: Path
) -> None:
    staged = stage(
        models["folder"], tmp_path, ImportRequest(model_format="onnx", model_path="iris.onnx")
    )
    try:
        result = build(
            staged.folder, staged.file or "", "predict", example=staged.example, home=tmp_path
        )
    finally:
        discard(staged)
    assert result.ok, result.log_tail
    assert (result.snapshot_path / ENTRY_FILE).is_file()
    assert (result.snapshot_path / "iris.onnx").is_file()
