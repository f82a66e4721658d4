"""A script written the way the reference platform's users write theirs, run as a real process.

Only its import line differs from the original (``import modelyard.cdsw as cdsw``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import modelyard
import modelyard.cdsw as cdsw
from _live import admin_key, live_server
from modelyard.errors import InvalidInput, ServerUnreachable, Unauthorized
from modelyard.runtime import free_port
from modelyard.tracking import backends

USER_SCRIPT = """
import time

import pandas as pd

import modelyard.cdsw as cdsw  # was: import cdsw

DEPLOYMENT_CRN = "crn:cdp:ml:us-west-1:deployment/6a6bd5e8-6f8a-4d59-a9a9-7e2b3c4d5e6f"


@cdsw.model_metrics
def predict(args):
    cdsw.track_metric("input", args)
    probability = 0.2 + 0.15 * args["tenure"] % 0.8
    cdsw.track_metric("probability", probability)
    return {"churn": probability > 0.5}


uuids = []
start = int(round(time.time() * 1000))
for tenure in range(10):
    result = predict({"tenure": tenure, "plan": "basic"})
    uuids.append(result["uuid"])

# weeks later: ground truth arrives
for i, uuid in enumerate(uuids):
    cdsw.track_delayed_metrics({"actual_result": i % 2}, uuid)

end = int(round(time.time() * 1000))
cdsw.track_aggregate_metrics({"accuracy": 0.7}, start, end, model_deployment_crn=DEPLOYMENT_CRN)

data = cdsw.read_metrics(model_deployment_crn=DEPLOYMENT_CRN, start_timestamp_ms=0,
                         end_timestamp_ms=end + 1)
df = pd.json_normalize(data["metrics"])
predictions = df[df["predictionUuid"] != ""]
aggregates = df[df["predictionUuid"] == ""]  # as the reference: an empty uuid
print(json.dumps({
    "rows": len(df),
    "columns": sorted(df.columns),
    "uuids_match": sorted(predictions["predictionUuid"]) == sorted(uuids),
    "actual": predictions.set_index("predictionUuid").loc[uuids, "metrics.actual_result"].tolist(),
    "tenure": predictions.set_index("predictionUuid").loc[uuids, "metrics.input.tenure"].tolist(),
    "accuracy": aggregates["metrics.accuracy"].tolist(),
}))
"""


@pytest.mark.slow
def test_reference_style_script_runs_unchanged_but_for_the_import(
    tmp_path: Path, modelyard_home: Path
) -> None:
    script = tmp_path / "monitor.py"
    script.write_text("import json\n" + textwrap.dedent(USER_SCRIPT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(modelyard_home)
    # as inside a replica of the reference platform, the deployment is given by the runtime
    env["MODELYARD_DEPLOYMENT_CRN"] = (
        "crn:cdp:ml:us-west-1:deployment/6a6bd5e8-6f8a-4d59-a9a9-7e2b3c4d5e6f"
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["rows"] == 11
    assert out["uuids_match"] is True
    assert out["actual"] == [i % 2 for i in range(10)]
    assert out["tenure"] == list(range(10))
    assert out["accuracy"] == [0.7]
    assert out["columns"] == sorted(
        [
            "modelDeploymentCrn",
            "modelBuildCrn",
            "modelCrn",
            "startTimeStampMs",
            "endTimeStampMs",
            "predictionUuid",
            "metrics.input.tenure",
            "metrics.input.plan",
            "metrics.probability",
            "metrics.actual_result",
            "metrics.accuracy",
        ]
    )


DEV_SCRIPT = """
import modelyard.cdsw as cdsw  # was: import cdsw

# the dev identifiers are fixed strings, printed on first use
DEV_DEPLOYMENT = "crn:modelyard:deployment/00000000-0000-0000-0000-000000000000"


@cdsw.model_metrics
def predict(args):
    cdsw.track_metric("input", args)
    return args["x"] * 2


out = predict({"x": 21})
cdsw.track_delayed_metrics({"actual": 40}, out["uuid"], dev=True)
records = cdsw.read_metrics(model_deployment_crn=DEV_DEPLOYMENT, dev=True)["metrics"]
print(json.dumps({"out": out["prediction"], "metrics": [r["metrics"] for r in records]}))
"""


@pytest.mark.slow
def test_without_a_home_a_script_runs_in_dev_mode(tmp_path: Path) -> None:
    script = tmp_path / "dev.py"
    script.write_text("import json\n" + textwrap.dedent(DEV_SCRIPT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["HOME"] = str(tmp_path / "user")  # no ~/.modelyard there: nothing is configured
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"out": 42, "metrics": [{"input": {"x": 21}, "actual": 40}]}
    assert done.stderr.count("dev mode") == 1
    assert not (tmp_path / "user" / ".modelyard").exists()


# -- what real scripts rely on beyond the calls themselves (REFERENCE.md section 6) ----------


@pytest.fixture
def dev_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing configured: records go to the in-memory dev store."""
    monkeypatch.delenv("MODELYARD_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    backends.close_all()
    yield
    backends.close_all()


def test_dev_model_deployment_crn_is_where_dev_mode_records(dev_mode: None) -> None:
    assert cdsw.dev_model_deployment_crn == modelyard.current_identity(dev=True).deployment_crn

    @cdsw.model_metrics
    def predict(args: dict[str, Any]) -> float:
        cdsw.track_metric("input", args)
        return np.float64(args["x"]) * 2

    out = predict({"x": np.float64(1.5)})
    records = cdsw.read_metrics(model_deployment_crn=cdsw.dev_model_deployment_crn, dev=True)
    assert [r["predictionUuid"] for r in records["metrics"]] == [out["uuid"]]


def _values_round_trip() -> tuple[list[dict[str, Any]], str]:
    """Reference-style values through every call: keys with spaces, numpy scalars, numpy
    booleans, strings, lists and nested dicts. Returns the records read back and the uuid."""

    @cdsw.model_metrics
    def predict(args: dict[str, Any]) -> Any:
        cdsw.track_metric("model input", args)
        cdsw.track_metric("class scores", np.array([0.25, 0.75]))
        cdsw.track_metric("is positive", np.bool_(True))
        return {"label": np.str_("yes")}

    out = predict({"petal length": np.float64(1.4)})
    start = int(time.time() * 1000) - 60_000
    cdsw.track_delayed_metrics({"actual result": np.int64(1), "seen by": "ops"}, out["uuid"])
    cdsw.track_aggregate_metrics(
        {"mean abs error": np.float32(0.5), "per class": {"setosa": {"n": np.int32(3)}}},
        start,
        start + 120_000,
        model_deployment_crn=modelyard.current_identity().deployment_crn,
    )
    deployment = modelyard.current_identity().deployment_crn
    return cdsw.read_metrics(model_deployment_crn=deployment)["metrics"], out["uuid"]


EXPECTED_PREDICTION = {
    "model input": {"petal length": 1.4},
    "class scores": [0.25, 0.75],
    "is positive": True,
    "actual result": 1,
    "seen by": "ops",
}
EXPECTED_AGGREGATE = {"mean abs error": 0.5, "per class": {"setosa": {"n": 3}}}


def test_reference_values_round_trip_embedded(modelyard_home: Path) -> None:
    records, uuid = _values_round_trip()
    by_uuid = {r["predictionUuid"]: r["metrics"] for r in records}
    assert by_uuid == {uuid: EXPECTED_PREDICTION, "": EXPECTED_AGGREGATE}
    # modelyard's own read_metrics keeps None there; only the cdsw module speaks the reference
    own = modelyard.read_metrics(model_deployment_crn=modelyard.current_identity().deployment_crn)
    assert sorted(str(r["predictionUuid"]) for r in own["metrics"]) == sorted(["None", uuid])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "double"
    root.mkdir()
    (root / "predict.py").write_text(
        "import modelyard\n\n\n@modelyard.model_metrics\ndef predict(args):\n"
        "    modelyard.track_metric('v', args.get('v'))\n    return {'y': args['x'] * 2}\n"
    )
    return root


@pytest.mark.slow
def test_reference_values_and_call_model_against_a_server(
    modelyard_home: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with live_server(modelyard_home, jobs=False) as url:
        admin = admin_key(modelyard_home)
        deployed = httpx.post(
            f"{url}/api/v1/models/churn/deploy",
            json={"project": str(project), "example": {"x": 1}},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=120,
        )
        assert deployed.status_code == 201, deployed.text
        access = deployed.json()["access_key"]
        monkeypatch.setenv("MODELYARD_URL", url)
        monkeypatch.setenv("MODELYARD_API_KEY", "myk_not-a-key-at-all-for-this-server")
        backends.close_all()
        # the API key as the third positional argument and as a keyword; numpy in the input
        for answer in (
            cdsw.call_model(access, {"x": np.float64(2.5), "v": np.arange(3)}, admin),
            cdsw.call_model(access, {"x": np.float64(2.5), "v": np.arange(3)}, api_key=admin),
        ):
            assert answer["success"] is True
            assert answer["response"]["prediction"] == {"y": 5.0}
        monkeypatch.setenv("MODELYARD_API_KEY", admin)
        # messages show the access key's first characters only
        wrong = access[:-4] + "zzzz"
        with pytest.raises(Unauthorized) as unknown:
            cdsw.call_model(wrong, {"x": 1})
        with pytest.raises(InvalidInput, match="not JSON-encodable") as bad:
            cdsw.call_model(access, {"x": {1, 2}})
        for error in (unknown.value, bad.value):
            assert access[:12] in str(error)
            assert access[:13] not in str(error) and wrong[:13] not in str(error)
        records, uuid = _values_round_trip()
    by_uuid = {r["predictionUuid"]: r["metrics"] for r in records}
    assert by_uuid == {uuid: EXPECTED_PREDICTION, "": EXPECTED_AGGREGATE}


def test_access_keys_show_by_prefix_when_no_server_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_URL", f"http://127.0.0.1:{free_port()}")
    key = "mya_9fQe2Lx0Zr7TbW1uVq3sPdK8nYcHjAoG5mEi4lRtXyU"
    with pytest.raises(ServerUnreachable) as unreachable:
        cdsw.call_model(key, {"x": np.float64(1.0)})
    assert "'mya_9fQe2Lx0...'" in str(unreachable.value)
    assert key[:13] not in str(unreachable.value)
