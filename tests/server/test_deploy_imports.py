"""Import deploys through the real app (in-process, real replicas): an ONNX file served with
batching and its build's source recorded; a failed import (input names that do not match, a
pickle without the trust flag, a missing file) leaves no model; a model built from an experiment
run's kept files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelyard.registry import Trigger
from modelyard.specs.experiment import ExperimentSpec

from .conftest import Api

X, Y = load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LogisticRegression]:
    folder = tmp_path_factory.mktemp("iris")
    model = LogisticRegression(max_iter=300).fit(X, Y)
    (folder / "iris.onnx").write_bytes(to_onnx(model, X[:1].astype(np.float32)).SerializeToString())
    (folder / "iris.pkl").write_bytes(pickle.dumps(model))
    return folder, model


@pytest.mark.slow
def test_onnx_import_serves_batches_and_bad_imports_leave_nothing(
    with_api: Any, iris: tuple[Path, LogisticRegression]
) -> None:
    folder, model = iris
    base = {"project": str(folder)}
    refused = [
        ({"model_format": "onnx", "model_path": "iris.onnx", "example": {"x": [1]}}, "['X']"),
        ({"model_format": "sklearn", "model_path": "iris.pkl"}, "--trust-pickle"),
        ({"model_format": "onnx", "model_path": "gone.onnx"}, "'gone.onnx' is not a file"),
    ]

    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        for extra, said in refused:
            failed = await c.post("/api/v1/models/iris/deploy", json={**base, **extra}, headers=h)
            assert failed.status_code == 400, failed.text
            assert said in failed.json()["error"]["message"], failed.text
            assert (await c.get("/api/v1/models/iris", headers=h)).status_code == 404
        assert not list((api.services.config.home / "builds" / "staging").iterdir())
        body = {**base, "model_format": "onnx", "model_path": "iris.onnx"}
        made = await c.post("/api/v1/models/iris/deploy", json=body, headers=h)
        assert made.status_code == 201, made.text
        assert made.json()["batch_function"] == "predict_batch"
        key = made.json()["access_key"]
        row = X[120].tolist()
        called = await c.post(f"/model?accessKey={key}", json={"request": {"X": row}}, headers=h)
        assert called.status_code == 200, called.text
        assert called.json()["response"]["output_label"] == int(model.predict([row])[0])
        wrong = await c.post(f"/model?accessKey={key}", json={"request": {"x": row}}, headers=h)
        assert "expected exactly the inputs X" in wrong.text
        builds = (await c.get("/api/v1/models/iris/builds", headers=h)).json()["builds"]
        assert builds[0]["source"] == {"kind": "onnx", "path": "iris.onnx", "inputs": ["X"]}
        assert builds[0]["file"] == "modelyard_entry.py"
        assert not list((api.services.config.home / "builds" / "staging").iterdir())

    with_api(scenario)


@pytest.mark.slow
def test_a_model_built_from_a_run_serves_the_files_it_kept(
    with_api: Any, iris: tuple[Path, LogisticRegression], tmp_path: Path
) -> None:
    folder, model = iris
    project = tmp_path / "project"
    project.mkdir()
    (project / "predict.py").write_text(
        "import json\n"
        "WEIGHTS = json.load(open('out/weights.json'))\n"
        "def predict(args):\n"
        "    return {'y': WEIGHTS['w'] * args['x']}\n"
    )

    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        registry = api.services.registry
        job = registry.experiments.create(
            ExperimentSpec(script="train.py", project=str(project)), None
        )
        run = registry.create_run(job.id, 0, 1, Trigger.MANUAL.value)
        registry.experiments.keep_file(run.id, "out/weights.json", b'{"w": 3}')
        registry.experiments.keep_file(run.id, "iris.onnx", (folder / "iris.onnx").read_bytes())
        unknown = await c.post(
            "/api/v1/models/w/deploy",
            json={"project": str(project), "from_run": "crn:modelyard:run/0000"},
            headers=h,
        )
        assert unknown.status_code in (400, 404), unknown.text
        assert (await c.get("/api/v1/models/w", headers=h)).status_code == 404
        made = await c.post(
            "/api/v1/models/w/deploy",
            json={"project": str(project), "from_run": run.id, "example": {"x": 2}},
            headers=h,
        )
        assert made.status_code == 201, made.text
        key = made.json()["access_key"]
        called = await c.post(f"/model?accessKey={key}", json={"request": {"x": 2}}, headers=h)
        assert called.json()["response"] == {"y": 6}, called.text
        builds = (await c.get("/api/v1/models/w/builds", headers=h)).json()["builds"]
        assert builds[0]["source"] == {"run": run.id, "files": ["iris.onnx", "out/weights.json"]}
        # The run's ONNX file served directly: the folder need not hold it.
        body = {"project": str(project), "from_run": run.id}
        onnx = {**body, "model_format": "onnx", "model_path": "iris.onnx"}
        made = await c.post("/api/v1/models/o/deploy", json=onnx, headers=h)
        assert made.status_code == 201, made.text
        key = made.json()["access_key"]
        row = X[0].tolist()
        called = await c.post(f"/model?accessKey={key}", json={"request": {"X": row}}, headers=h)
        assert called.json()["response"]["output_label"] == int(model.predict([row])[0])
        source = (await c.get("/api/v1/models/o/builds", headers=h)).json()["builds"][0]["source"]
        assert source["run"] == run.id and source["kind"] == "onnx"

    with_api(scenario)
