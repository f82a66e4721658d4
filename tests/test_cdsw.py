"""A script written the way the reference platform's users write theirs, run as a real process.

Only its import line differs from the original (``import modelyard.cdsw as cdsw``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
predictions = df[df["predictionUuid"].notnull()]
aggregates = df[df["predictionUuid"].isnull()]
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
