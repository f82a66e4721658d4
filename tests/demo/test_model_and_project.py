"""The trained model's JSON export scores like scikit-learn, through the deployed predict.py."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelyard.demo import generator
from modelyard.demo.model import train
from modelyard.demo.project.predict import churn_probability


def test_exported_model_scores_like_sklearn() -> None:
    rng = np.random.default_rng(5)
    frame = generator.customers(rng, 3000)
    churned = generator.draw_churn(rng, frame)
    params = train(frame, churned)
    reference = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), list(generator.NUMERIC)),
                        (
                            "cat",
                            OneHotEncoder(handle_unknown="ignore"),
                            list(generator.CATEGORICAL),
                        ),
                    ]
                ),
            ),
            ("fit", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame, churned)
    test = generator.customers(rng, 200, covariate_drift=True)
    expected = reference.predict_proba(test)[:, 1]
    got = [churn_probability(c, params) for c in test.to_dict("records")]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert 0.7 < params["train_auc"] < 0.95
    json.dumps(params)  # plain JSON, nothing pickled


def test_predict_py_records_inputs_and_probability(tmp_path: Path) -> None:
    """The project file as deployed: model.json beside it, a decorated predict tracking both."""
    import importlib.util

    import modelyard

    rng = np.random.default_rng(6)
    frame = generator.customers(rng, 1000)
    params = train(frame, generator.draw_churn(rng, frame))
    project = tmp_path / "project"
    project.mkdir()
    with resources.as_file(resources.files("modelyard.demo.project") / "predict.py") as src:
        shutil.copy(src, project / "predict.py")
    (project / "model.json").write_text(json.dumps(params))
    spec = importlib.util.spec_from_file_location("demo_predict_under_test", project / "predict.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    customer = {k: (v.item() if hasattr(v, "item") else v) for k, v in frame.iloc[0].items()}
    answer = module.predict({**customer, "ignored": "extra fields are not tracked"})
    probability = churn_probability(customer, params)
    assert answer["prediction"]["churn_probability"] == round(probability, 6)
    records = modelyard.read_metrics(modelyard.current_identity().deployment_crn)["metrics"]
    (mine,) = [r for r in records if r["predictionUuid"] == answer["uuid"]]
    assert mine["metrics"]["churn_probability"] == probability
    assert mine["metrics"]["contract"] == customer["contract"]
    assert "ignored" not in mine["metrics"]
