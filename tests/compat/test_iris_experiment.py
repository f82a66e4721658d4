"""The template's ``fit.py`` (first generation, import line changed) as an experiment:
``modelyard experiments run fit.py`` against a real server process records its metrics (numpy
scalars, a key with a space) and keeps ``model.pkl``, the file it tracked."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from compat import iris
from modelyard.cli import main
from server.conftest import ServerProcess, server_process  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_fit_py_as_an_experiment_keeps_its_metrics_and_model(
    server_process: Callable[[], ServerProcess],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server_process()
    folder = tmp_path / "iris"
    folder.mkdir()
    (folder / "fit.py").write_text(iris.FIT)
    code, out, err = _cli(
        capsys, "experiments", "run", "--project-dir", str(folder), "fit.py", "--wait", "--json"
    )
    assert code == 0, (out, err)
    run = orjson.loads(out)
    assert run["state"] == "succeeded", run
    assert set(run["metrics"]) == {"mean_sq_err", "r2 score", "test rows"}
    assert 0 < run["metrics"]["mean_sq_err"] < 0.1 and run["metrics"]["test rows"] == 20
    [kept] = run["files"]
    assert (kept["path"], kept["state"]) == ("model.pkl", "kept")
    target = tmp_path / "model.pkl"
    code, out, err = _cli(
        capsys, "experiments", "download", run["uuid"], "model.pkl", "--output", str(target)
    )
    assert code == 0, (out, err)
    model = pickle.loads(target.read_bytes())  # the test's own file, trained just now
    assert model.predict([[1.4]]).shape == (1, 1)
    assert not (folder / "model.pkl").exists()  # the run wrote in its own working folder
