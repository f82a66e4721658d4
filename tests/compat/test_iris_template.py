"""The reference's iris template run end to end, in both generations' style (``iris.py``).

Train (``fit.py``), serve (dev mode: the usage script imports the predict function; deployment
mode: the model deployed on a real server, the usage script calling it with numpy inputs over
``call_model``), read back with ``pandas.json_normalize``, join ground truth, write an aggregate.
Each script runs as its own process, as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn import datasets

from _live import admin_key, live_server
from compat import iris

pytestmark = pytest.mark.slow

GENERATIONS = {"cdsw": iris.CDSW, "cml": iris.CML}
DEV_CRN = "crn:modelyard:deployment/00000000-0000-0000-0000-000000000000"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(extra)
    return env


def _run(folder: Path, script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _project(root: Path, generation: str, **values: str) -> Path:
    """A project folder with the generation's scripts as the user edited them, trained."""
    folder = root / generation
    folder.mkdir()
    (folder / "fit.py").write_text(iris.FIT)
    for name, text in GENERATIONS[generation].items():
        (folder / name).write_text(iris.fill(text, **values))
    fit = _run(folder, "fit.py", _env(HOME=str(root / "user")))
    assert (folder / "model.pkl").is_file()
    # outside an experiment: nothing recorded, one warning each, as the reference does nothing
    assert fit.stderr.count("was not kept") == 1
    assert fit.stderr.count("were not recorded") == 1
    return folder


def _check_usage(out: dict[str, Any]) -> None:
    petal_length = datasets.load_iris().data[:20, 2]
    assert out["predictions"] == 20
    assert out["aggregates"] == 1
    assert out["uuids_match"] is True
    assert out["joined"] == 20
    assert out["truth_matches"] is True
    assert out["aggregate_mae"] == pytest.approx([out["mae"]])
    assert out["recorded_mae"] == pytest.approx([out["mae"]])
    assert 0 < out["mae"] < 0.2
    assert out["window_n"] == [20]
    assert sorted(out["long_petal"]) == sorted(bool(x > 1.45) for x in petal_length)
    assert 0 < out["close"] <= 20
    assert {
        "predictionUuid",
        "startTimeStampMs",
        "endTimeStampMs",
        "modelDeploymentCrn",
        "modelBuildCrn",
        "modelCrn",
        "metrics.input.petal_length",
        "metrics.predict result",
        "metrics.details.long petal",
        "metrics.actual_result",
        "metrics.close enough",
        "metrics.mean_absolute_error",
        "metrics.window.n",
        "metrics.window.labels",
    } <= set(out["columns"])


@pytest.mark.parametrize("generation", sorted(GENERATIONS))
def test_the_template_runs_in_dev_mode(tmp_path: Path, generation: str) -> None:
    folder = _project(tmp_path, generation, dev="True")
    done = _run(folder, "use_model_metrics.py", _env(HOME=str(tmp_path / "user")))
    out = json.loads(done.stdout)
    _check_usage(out)
    assert out["deployment"] == DEV_CRN  # the script read dev_model_deployment_crn
    assert not (tmp_path / "user" / ".modelyard").exists()


def _deploy(url: str, admin: str, name: str, folder: Path) -> tuple[str, str]:
    deployed = httpx.post(
        f"{url}/api/v1/models/{name}/deploy",
        json={
            "project": str(folder),
            "file": "predict_with_metrics.py",
            "function": "predict",
            "example": {"petal_length": 1.4},
        },
        headers={"Authorization": f"Bearer {admin}"},
        timeout=300,
    )
    assert deployed.status_code == 201, deployed.text
    return deployed.json()["access_key"], deployed.json()["deployment"]["crn"]


def test_the_template_runs_against_a_deployed_model(tmp_path: Path, modelyard_home: Path) -> None:
    """Deployment mode: the inputs hold numpy float64 (``score_x[i][0]``), the API key goes as
    the third positional argument (first generation) and as a keyword (newer generation)."""
    with live_server(modelyard_home, jobs=False) as url:
        admin = admin_key(modelyard_home)
        for generation in sorted(GENERATIONS):
            folder = _project(tmp_path, generation)
            access, crn = _deploy(url, admin, f"iris-{generation}", folder)
            usage = folder / "use_model_metrics.py"
            usage.write_text(
                iris.fill(
                    GENERATIONS[generation]["use_model_metrics.py"],
                    crn=crn,
                    access=access,
                    api=admin,
                    dev="False",
                )
            )
            # the session's own credentials, as a workbench session has them for its SDK calls
            env = _env(MODELYARD_URL=url, MODELYARD_API_KEY=admin, HOME=str(tmp_path / "user"))
            out = json.loads(_run(folder, "use_model_metrics.py", env).stdout)
            _check_usage(out)
            assert out["deployment"] == crn
