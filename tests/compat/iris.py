"""The reference's iris template (``fit.py``, ``predict_with_metrics.py``,
``use_model_metrics.py``) in both generations' style, as users have them.

``CDSW`` holds the first generation's scripts with only their import line changed
(``import modelyard.cdsw as cdsw  # was: import cdsw``); ``CML`` the newer generation's, whose
import lines (``import cml.metrics_v1 as metrics``, ``import cml.models_v1 as models``) stay as
they are, since the modelyard-cml distribution provides those modules. The ``<...>`` placeholders
are what a user edits by hand in the template (the CRN and keys from the model's page, ``dev``).

Beyond the template, the scripts use what real scripts do: a metric key with a space, values
that are numpy scalars, numpy booleans, strings, lists and nested dicts.
"""

from __future__ import annotations

__all__ = ["CDSW", "CML", "FIT", "fill"]

FIT = """
import pickle

import modelyard.cdsw as cdsw  # was: import cdsw
from sklearn import datasets
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, r2_score

iris = datasets.load_iris()
test_size = 20

train_x = iris.data[test_size:, 2].reshape(-1, 1)  # petal length
train_y = iris.data[test_size:, 3].reshape(-1, 1)  # petal width
test_x = iris.data[:test_size, 2].reshape(-1, 1)
test_y = iris.data[:test_size, 3].reshape(-1, 1)

model = LinearRegression()
model.fit(train_x, train_y)
test_pred = model.predict(test_x)

mse = mean_squared_error(test_pred, test_y)
r2 = r2_score(test_pred, test_y)
cdsw.track_metric("mean_sq_err", mse)  # numpy float64
cdsw.track_metric("r2 score", r2)
cdsw.track_metric("test rows", test_x.shape[0])

with open("model.pkl", "wb") as fh:
    pickle.dump(model, fh)
cdsw.track_file("model.pkl")
print("trained: mse", round(float(mse), 4))
"""

_PREDICT_CDSW = """
import pickle

import modelyard.cdsw as cdsw  # was: import cdsw

with open("model.pkl", "rb") as fh:
    model = pickle.load(fh)


@cdsw.model_metrics
def predict(args):
    cdsw.track_metric("input", args)
    petal_length = float(args.get("petal_length"))
    result = model.predict([[petal_length]])
    prediction = result[0][0]  # numpy float64
    cdsw.track_metric("predict result", prediction)
    cdsw.track_metric("details", {"long petal": petal_length > 1.45, "shape": list(result.shape)})
    return prediction
"""

_PREDICT_CML = """
import pickle

import cml.metrics_v1 as metrics
import cml.models_v1 as models

with open("model.pkl", "rb") as fh:
    model = pickle.load(fh)


@models.cml_model(metrics=True)
def predict(args):
    metrics.track_metric("input", args)
    petal_length = float(args.get("petal_length"))
    result = model.predict([[petal_length]])
    prediction = result[0][0]  # numpy float64
    metrics.track_metric("predict result", prediction)
    metrics.track_metric(
        "details", {"long petal": petal_length > 1.45, "shape": list(result.shape)}
    )
    return prediction
"""

# The usage script; {m} is the module the metrics calls are made on, {call} the call of a model.
_USE = """
import json
import time

import numpy as np
import pandas as pd
from sklearn import datasets

{imports}

model_deployment_crn = "<deployment crn>"  # from the model's page
model_access_key = "<access key>"
api_key = "<api key>"
dev = <dev>

if dev:
    from predict_with_metrics import predict

    model_deployment_crn = {m}.dev_model_deployment_crn

iris = datasets.load_iris()
test_size = 20
score_x = iris.data[:test_size, 2].reshape(-1, 1)  # petal length

start_timestamp_ms = int(round(time.time() * 1000))
uuids = []
predictions = []
for i in range(len(score_x)):
    if dev:
        output = {{"response": predict({{"petal_length": score_x[i][0]}})}}
    else:
        output = {call}
    uuids.append(output["response"]["uuid"])
    predictions.append(output["response"]["prediction"])
end_timestamp_ms = int(round(time.time() * 1000))

score_y = iris.data[:test_size, 3].reshape(-1, 1)  # the observed petal width: ground truth
mean_absolute_error = 0
n = len(score_y)
for i in range(n):
    ground_truth = score_y[i][0]  # numpy float64
    close = np.abs(ground_truth - predictions[i]) < 0.2  # numpy bool
    {m}.track_delayed_metrics(
        {{"actual_result": ground_truth, "close enough": close}}, uuids[i], dev=dev
    )
    mean_absolute_error += np.abs(ground_truth - predictions[i]) / n

{m}.track_aggregate_metrics(
    {{
        "mean_absolute_error": mean_absolute_error,
        "window": {{"n": np.int64(n), "labels": ["width"]}},
    }},
    start_timestamp_ms,
    end_timestamp_ms,
    model_deployment_crn=model_deployment_crn,
    dev=dev,
)

data = {m}.read_metrics(
    model_deployment_crn=model_deployment_crn,
    start_timestamp_ms=start_timestamp_ms,
    end_timestamp_ms=end_timestamp_ms,
    dev=dev,
)
df = pd.json_normalize(data["metrics"])
rows = df[df["predictionUuid"] != ""]
aggregates = df[df["predictionUuid"] == ""]

# join ground truth known elsewhere to the recorded predictions, and write an aggregate from it
truth = pd.DataFrame({{"predictionUuid": uuids, "truth": score_y[:, 0]}})
joined = rows.merge(truth, on="predictionUuid")
recomputed = (joined["metrics.predict result"] - joined["truth"]).abs().mean()
{m}.track_aggregate_metrics(
    {{"mae from records": recomputed}},
    start_timestamp_ms,
    end_timestamp_ms,
    model_deployment_crn=model_deployment_crn,
    dev=dev,
)
again = {m}.read_metrics(
    model_deployment_crn=model_deployment_crn,
    start_timestamp_ms=start_timestamp_ms,
    end_timestamp_ms=end_timestamp_ms,
    dev=dev,
)
after = pd.json_normalize(again["metrics"])
print(json.dumps({{
    "columns": sorted(df.columns),
    "predictions": len(rows),
    "aggregates": len(aggregates),
    "uuids_match": sorted(rows["predictionUuid"]) == sorted(uuids),
    "joined": len(joined),
    "truth_matches": bool(np.allclose(joined["metrics.actual_result"], joined["truth"])),
    "mae": float(mean_absolute_error),
    "recomputed": float(recomputed),
    "aggregate_mae": aggregates["metrics.mean_absolute_error"].dropna().tolist(),
    "window_n": aggregates["metrics.window.n"].dropna().tolist(),
    "recorded_mae": after[after["predictionUuid"] == ""]["metrics.mae from records"]
    .dropna()
    .tolist(),
    "close": int(rows["metrics.close enough"].sum()),
    "long_petal": rows["metrics.details.long petal"].tolist(),
    "deployment": model_deployment_crn,
}}))
"""

CDSW = {
    "predict_with_metrics.py": _PREDICT_CDSW,
    "use_model_metrics.py": _USE.format(
        imports="import modelyard.cdsw as cdsw  # was: import cdsw",
        m="cdsw",
        # the API key as the third positional argument
        call='cdsw.call_model(model_access_key, {"petal_length": score_x[i][0]}, api_key)',
    ),
}
CML = {
    "predict_with_metrics.py": _PREDICT_CML,
    "use_model_metrics.py": _USE.format(
        imports="import cml.metrics_v1 as metrics\nimport cml.models_v1 as models",
        m="metrics",
        # the API key as a keyword
        call='models.call_model(model_access_key, {"petal_length": score_x[i][0]}, '
        "api_key=api_key)",
    ),
}


def fill(script: str, **values: str) -> str:
    """``script`` with the user's edits: ``<deployment crn>``, ``<access key>``, ``<api key>``
    and ``<dev>`` replaced by ``values`` (keys ``crn``, ``access``, ``api``, ``dev``)."""
    names = {"crn": "<deployment crn>", "access": "<access key>", "api": "<api key>"}
    for key, placeholder in names.items():
        script = script.replace(placeholder, values.get(key, placeholder))
    return script.replace("<dev>", values.get("dev", "False"))
