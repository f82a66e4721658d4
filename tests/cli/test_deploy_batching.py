"""``models deploy`` says which batch function the replicas serve and warns when an auto-detected
``predict_batch`` bypasses a ``@model_metrics`` ``predict`` (a real server process; the --json
output is the REST answer as the server sent it)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from cli.test_models_cli import cli
from server.conftest import ServerProcess, server_process  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

SOURCE = """
import modelyard

@modelyard.model_metrics
def predict(args):
    modelyard.track_metric("x", args["x"])
    return {"double": args["x"] * 2}

def predict_batch(items):
    return [{"double": item["x"] * 2} for item in items]
"""


def test_deploy_names_the_batch_function_and_warns_about_a_bypassed_predict(
    server_process: Callable[[], ServerProcess],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = tmp_path / "batched"
    project.mkdir()
    (project / "predict.py").write_text(textwrap.dedent(SOURCE))
    server_process()
    deploy = ["models", "deploy", "batched", "--project-dir", str(project), "--example", '{"x": 1}']

    code, out, err = cli(capsys, *deploy, "--json")
    assert code == 0, err
    outcome = orjson.loads(out)
    assert outcome["batch_function"] == "predict_batch" and outcome["batch_function_auto"] is True
    (warning,) = outcome["warnings"]
    assert "never called" in warning
    assert err.count("warning: ") == 1 and "--batch-function none" in " ".join(err.split())

    code, out, err = cli(capsys, *deploy, "--batch-function", "none")
    assert code == 0, err
    assert "batch function" in out and "none: each call runs the function alone" in out
    assert "warning" not in err

    code, out, err = cli(capsys, *deploy, "--batch-function", "predict_batch")
    assert code == 0, err
    assert "predict_batch (--batch-function)" in " ".join(out.split()) and "warning" not in err
