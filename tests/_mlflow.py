"""MLflow models saved by the real ``mlflow`` package, for the MLflow import tests and benchmark.

MLflow is not a Modelyard dependency, so the models are saved by a separate virtualenv (as the
serving benchmark does for ``mlflow models serve``), created on first use and kept between runs in
``$MODELYARD_TEST_CACHE/mlflow`` (default ``~/.cache/modelyard-tests/mlflow``). Its scikit-learn,
pandas, NumPy, skops and cloudpickle are pinned to the versions Modelyard runs on, so the model's
requirements pin those same versions and a build environment only installs ``mlflow-skinny``.

``save_models(dest)`` writes two models into ``dest``: ``sklearn/`` (``mlflow.sklearn``, a
logistic regression on iris with a column signature and an input example) and ``custom/`` (an
``mlflow.pyfunc.PythonModel`` with columns of three types, a ``factor`` parameter and an input
example). Both get the same requirements, so one build environment serves both.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path
from typing import Any

__all__ = ["MLFLOW_ENV", "mlflow_python", "save_models"]

MLFLOW_ENV = (
    Path(os.environ.get("MODELYARD_TEST_CACHE", Path.home() / ".cache" / "modelyard-tests"))
    / "mlflow"
)
_PINNED = ("scikit-learn", "pandas", "numpy", "skops", "cloudpickle")
_PROBE = "import mlflow.pyfunc, mlflow.sklearn, sklearn, pandas, skops, cloudpickle"

_SAVE = """
    import json, sys
    import mlflow, mlflow.pyfunc, mlflow.sklearn, pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    out = sys.argv[1]
    iris = load_iris(as_frame=True)
    X = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    model = LogisticRegression(max_iter=500).fit(X, iris.target)
    mlflow.sklearn.save_model(
        model, f"{out}/sklearn", signature=infer_signature(X, model.predict(X)),
        input_example=X.head(2), extra_pip_requirements=[sys.argv[2]],
    )
    with open(f"{out}/sklearn/requirements.txt") as f:
        requirements = [line.strip() for line in f if line.strip()]


    class Scale(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            factor = (params or {}).get("factor", 2.0)
            return pd.DataFrame({
                "scaled": model_input["x"] * factor,
                "label": model_input["label"].str.upper(),
                "n": model_input["n"] + 1,
            })


    example = pd.DataFrame({"x": [1.5, 2.0], "label": ["a", "b"], "n": [1, 2]})
    signature = infer_signature(example, Scale().predict(None, example), params={"factor": 2.0})
    mlflow.pyfunc.save_model(
        f"{out}/custom", python_model=Scale(), signature=signature,
        input_example=example.head(1), pip_requirements=requirements,
    )
    print(json.dumps({"mlflow": mlflow.__version__, "columns": list(X.columns),
                      "requirements": requirements}))
"""


def mlflow_python() -> Path:
    """The cached MLflow virtualenv's python, created (or completed) on first use."""
    python = MLFLOW_ENV / "bin" / "python"
    MLFLOW_ENV.parent.mkdir(parents=True, exist_ok=True)
    with open(MLFLOW_ENV.parent / "mlflow.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions never install at once
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_ENV)], check=True)
        if subprocess.run([python, "-c", _PROBE], capture_output=True).returncode != 0:
            pins = [f"{name}=={version(name)}" for name in _PINNED]
            done = subprocess.run(
                [python, "-m", "pip", "install", "-q", "mlflow-skinny>=3,<4", *pins],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(f"installing MLflow failed: {done.stderr.strip()[-800:]}")
    return python


def save_models(dest: Path) -> dict[str, Any]:
    """Save the two models into ``dest``; MLflow's version, the iris columns, the requirements."""
    python = mlflow_python()
    dest.mkdir(parents=True, exist_ok=True)
    script = dest / "save_models.py"
    script.write_text(textwrap.dedent(_SAVE))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"file://{dest / 'mlruns'}"}
    saved = subprocess.run(
        [python, str(script), str(dest), f"cloudpickle=={version('cloudpickle')}"],
        capture_output=True,
        text=True,
        cwd=dest,
        env=env,
    )
    if saved.returncode != 0:
        raise RuntimeError(f"saving the MLflow models failed: {saved.stderr.strip()[-800:]}")
    script.unlink()
    info: dict[str, Any] = json.loads(saved.stdout.strip().splitlines()[-1])
    return info
