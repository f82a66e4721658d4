"""MLflow imports: ``plan_mlflow`` on model folders, the ``--mlflow`` URI helper, and models saved
by the real ``mlflow`` package deployed through a real server and called.

The fast tests use MLmodel files as MLflow 3 writes them; the slow ones save an scikit-learn
model and a custom pyfunc with the real package (a cached virtualenv, ``tests/_mlflow.py``) and
share one server and one build environment (both models have the same requirements).
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _mlflow import save_models
from _server import ServerProcess
from modelyard.builds.imported import ENTRY_FILE
from modelyard.builds.imported.mlflow import REQUIREMENTS_FILE, plan_mlflow
from modelyard.cli.mlflow_uri import is_remote_uri, local_model_folder, mlflow_folder
from modelyard.errors import InvalidInput

MLMODEL = """
    flavors:
      python_function:
        env: {conda: conda.yaml, virtualenv: python_env.yaml}
        loader_module: mlflow.sklearn
        model_path: model.skops
        predict_fn: predict
        python_version: 3.11.7
      sklearn: {pickled_model: model.skops, serialization_format: skops}
    mlflow_version: 3.18.0
    saved_input_example_info:
      artifact_path: input_example.json
      pandas_orient: split
      serving_input_path: serving_input_example.json
      type: dataframe
    signature:
      inputs: '[{"type": "double", "name": "a", "required": true},
        {"type": "string", "name": "b", "required": true}]'
      outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
      params: null
"""
SERVING_EXAMPLE = '{"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, "x"], [2.0, "y"]]}}'


def model_folder(root: Path, **files: str) -> Path:
    """An MLflow-like model folder: ``MLmodel`` and example files, overridden by ``files``."""
    defaults = {
        "MLmodel": MLMODEL,
        "serving_input_example.json": SERVING_EXAMPLE,
        "input_example.json": '{"columns": ["a", "b"], "data": [[1.5, "x"]]}',
        "requirements.txt": "mlflow==3.18.0\nscikit-learn==1.9.1\n",
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, text in {**defaults, **files}.items():
        if text:
            (root / name).write_text(textwrap.dedent(text))
    return root


def requirement_lines(staged: Path) -> list[str]:
    text = (staged / REQUIREMENTS_FILE).read_text()
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_plan_reads_mlmodel_requirements_and_example(tmp_path: Path) -> None:
    model_folder(tmp_path / "models" / "iris")
    plan = plan_mlflow(tmp_path, "models/iris")
    assert plan.kind == "mlflow"
    assert (plan.function, plan.batch_function) == ("predict", "predict_batch")
    assert plan.requirements == REQUIREMENTS_FILE
    # mlflow is served by mlflow-skinny of the same version; the rest as the model pins it
    assert requirement_lines(tmp_path) == ["mlflow-skinny==3.18.0", "scikit-learn==1.9.1"]
    assert plan.example == {"a": 1.5, "b": "x"}  # the example's first row, by column
    assert "load_model(__file__, 'models/iris')" in plan.entry_source
    assert plan.source["kind"] == "mlflow"
    assert plan.source["mlflowVersion"] == "3.18.0"
    assert plan.source["requirementsFrom"] == "requirements.txt"
    assert plan.source["flavours"] == ["python_function", "sklearn"]
    compile(plan.entry_source, ENTRY_FILE, "exec")


def test_conda_pip_section_when_no_requirements_txt(tmp_path: Path) -> None:
    conda = """
        channels: [conda-forge]
        dependencies:
        - python=3.11.7
        - pip:
          - pandas==3.1.1
          - -r extra.txt
        name: mlflow-env
    """
    model_folder(tmp_path / "m", **{"requirements.txt": "", "conda.yaml": conda})
    plan = plan_mlflow(tmp_path, "m")
    assert plan.source["requirementsFrom"] == "conda.yaml"
    # the -r path is made relative to the staged folder, where pip runs; mlflow-skinny is added
    # pinned to the version that saved the model, as no mlflow line was there
    assert requirement_lines(tmp_path) == [
        "pandas==3.1.1",
        "-r m/extra.txt",
        "mlflow-skinny==3.18.0",
    ]


def test_requirement_file_is_never_written_through_a_link(tmp_path: Path) -> None:
    model_folder(tmp_path / "m")
    outside = tmp_path / "users-file.txt"
    outside.write_text("keep me\n")
    (tmp_path / REQUIREMENTS_FILE).hardlink_to(outside)  # as staging links copied files
    plan_mlflow(tmp_path, "m")
    assert outside.read_text() == "keep me\n"


def test_not_an_mlflow_model_says_mlmodel_is_missing(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.pkl").write_bytes(b"x")
    with pytest.raises(
        InvalidInput, match=r"'m' is not an MLflow model: it has no MLmodel.*model\.pkl"
    ):
        plan_mlflow(tmp_path, "m")
    with pytest.raises(InvalidInput, match=r"'nowhere' is not a folder"):
        plan_mlflow(tmp_path, "nowhere")
    with pytest.raises(InvalidInput, match=r"model_path='\.\./m' is not a relative path"):
        plan_mlflow(tmp_path, "../m")


def test_no_pyfunc_flavour_is_refused_naming_the_flavours(tmp_path: Path) -> None:
    mlmodel = "flavors:\n  keras: {keras_version: 3.0}\nmlflow_version: 3.18.0\n"
    model_folder(tmp_path / "m", MLmodel=mlmodel)
    with pytest.raises(InvalidInput, match=r"no 'python_function' \(pyfunc\) flavour.*keras"):
        plan_mlflow(tmp_path, "m")
    assert not (tmp_path / REQUIREMENTS_FILE).exists()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"MLmodel": "flavors: [unclosed"}, r"MLmodel of the MLflow model 'm' is not valid YAML"),
        ({"MLmodel": "just text"}, r"is not a YAML mapping"),
        ({"requirements.txt": "", "conda.yaml": "name: x\n"}, r"conda\.yaml .* no 'dependencies'"),
        (
            {"requirements.txt": "", "conda.yaml": "dependencies:\n- pip: pandas\n"},
            r"'pip' section of the conda\.yaml .* is not a list",
        ),
        ({"serving_input_example.json": "{nope"}, r"input example .* is not JSON"),
    ],
)
def test_unreadable_files_are_refused_naming_the_file(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    model_folder(tmp_path / "m", **files)
    with pytest.raises(InvalidInput, match=message):
        plan_mlflow(tmp_path, "m")


def test_requirements_not_utf8_are_refused(tmp_path: Path) -> None:
    model_folder(tmp_path / "m")
    (tmp_path / "m" / "requirements.txt").write_bytes(b"pandas\xff\xfe\n")
    with pytest.raises(
        InvalidInput, match=r"requirements\.txt of the MLflow model 'm' cannot be read"
    ):
        plan_mlflow(tmp_path, "m")


def test_uri_helper_local_paths_and_remote_uris(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "my model")
    assert local_model_folder(str(folder)) == folder.resolve()
    assert local_model_folder(folder.resolve().as_uri()) == folder.resolve()  # file:// (%20)
    with mlflow_folder(str(folder)) as found:
        assert found == folder.resolve()
    with pytest.raises(InvalidInput, match=r"does not exist"):
        local_model_folder(str(tmp_path / "missing"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(InvalidInput, match=r"'.*plain' is not an MLflow model: it has no MLmodel"):
        local_model_folder(str(tmp_path / "plain"))
    assert is_remote_uri("runs:/0123abcd/model") and is_remote_uri("models:/churn@champion")
    assert not is_remote_uri(str(folder)) and not is_remote_uri(folder.as_uri())


def test_remote_uri_without_mlflow_installed_says_what_to_do() -> None:
    with pytest.raises(ModuleNotFoundError):
        import mlflow  # noqa: F401
    with (
        pytest.raises(InvalidInput, match=r"needs the mlflow package.*pip install mlflow-skinny"),
        mlflow_folder("runs:/0123abcd/model"),
    ):
        pass


# -- models saved by the real mlflow package, deployed and called --------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("mlflow-models")
    info = save_models(root)
    info["root"] = root
    return info


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("mlflow-server") / "home").start()
    try:
        yield proc
    finally:
        proc.stop()


def deploy(server: ServerProcess, name: str, folder: Path) -> dict[str, Any]:
    body = {"project": str(folder), "model_format": "mlflow", "model_path": "."}
    answer = httpx.post(
        f"{server.base}/api/v1/models/{name}/deploy", json=body, headers=server.auth, timeout=600
    )
    assert answer.status_code in (200, 201), answer.text
    outcome: dict[str, Any] = answer.json()
    return outcome


def call(server: ServerProcess, name: str, body: Any) -> httpx.Response:
    url = f"{server.base}/api/v1/models/{name}/predict"
    return httpx.post(url, json=body, headers=server.auth, timeout=60)


@pytest.mark.slow
def test_real_models_plan(saved: dict[str, Any], tmp_path: Path) -> None:
    shutil.copytree(saved["root"] / "custom", tmp_path / "custom")
    plan = plan_mlflow(tmp_path, "custom")
    assert plan.example == {"x": 1.5, "label": "a", "n": 1}
    lines = requirement_lines(tmp_path)
    assert f"mlflow-skinny=={saved['mlflow']}" in lines
    assert not any(line.startswith("mlflow==") for line in lines)
    (tmp_path / "custom" / "requirements.txt").unlink()  # conda.yaml's pip section: same set
    plan_mlflow(tmp_path, "custom")
    assert sorted(requirement_lines(tmp_path)) == sorted(lines)


@pytest.mark.slow
def test_sklearn_model_served_end_to_end(saved: dict[str, Any], server: ServerProcess) -> None:
    outcome = deploy(server, "iris", saved["root"] / "sklearn")
    assert "mlflow" in str(outcome)
    setosa = {"sepal_length": 5, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    answer = call(server, "iris", setosa)  # ints for double columns: converted
    assert answer.status_code == 200, answer.text
    assert answer.json()["response"] == {"prediction": 0}
    split = {"columns": saved["columns"], "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
    answer = call(server, "iris", {"dataframe_split": split})  # what mlflow models serve takes
    assert answer.json()["response"] == {"predictions": [0, 2]}
    missing = call(server, "iris", {"sepal_length": 5.1})
    assert "no column 'sepal_width'" in missing.text, missing.text
    builds = httpx.get(f"{server.base}/api/v1/models/iris/builds", headers=server.auth).json()
    assert "mlflow" in str(builds)


@pytest.mark.slow
def test_custom_pyfunc_served_end_to_end(saved: dict[str, Any], server: ServerProcess) -> None:
    deploy(server, "scaler", saved["root"] / "custom")
    answer = call(server, "scaler", {"x": 3, "label": "abc", "n": 4})
    assert answer.status_code == 200, answer.text
    assert answer.json()["response"] == {"prediction": {"scaled": 6.0, "label": "ABC", "n": 5}}
    with_params = call(server, "scaler", {"x": 3, "label": "a", "n": 1, "params": {"factor": 10}})
    assert with_params.json()["response"]["prediction"]["scaled"] == 30.0
    records = {"dataframe_records": [{"x": 1, "label": "q", "n": 2}], "params": {"factor": 0.5}}
    answer = call(server, "scaler", records)
    assert answer.json()["response"] == {"predictions": [{"scaled": 0.5, "label": "Q", "n": 3}]}
    fraction = call(server, "scaler", {"x": 3, "label": "abc", "n": 4.5})
    assert "column 'n': 4.5 is not a long" in fraction.text, fraction.text
