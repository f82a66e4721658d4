"""An MLflow model served by Modelyard (``--mlflow``) against MLflow's own ``mlflow models serve``
of the same folder.

The model is the serving benchmark's (StandardScaler + LogisticRegression on
``load_breast_cancer``, saved with ``mlflow.sklearn.save_model``, ``predict_proba``, with a
signature), saved once by the MLflow virtualenv ``benchmarks/.envs/mlflow`` (created on first
use). The same folder is then served twice:

- ``mlflow serve``: ``mlflow models serve --env-manager local`` (one uvicorn worker), called on
  ``/invocations`` with a one-row ``dataframe_split`` body;
- ``modelyard``: a real ``modelyard server`` in a temp home, the folder deployed over REST as an
  MLflow import (pyfunc loaded by the generated entry, records on), called on
  ``POST /api/v1/models/{name}/predict`` with the same ``dataframe_split`` body (answered
  ``{"predictions": [...]}`` as MLflow answers) and with the row as a plain object (which the
  entry's ``predict_batch`` groups under load).

Figures: req/s at concurrency 8 and p50 at concurrency 1 (and 64), median of ``--repeat`` rounds,
interleaved, with the load generator and the processes' CPU time as in ``serving.py``.

    .venv/bin/python benchmarks/imports_mlflow.py            # 10 s runs, 3 rounds
    .venv/bin/python benchmarks/imports_mlflow.py --seconds 3 --repeat 1   # a quick look
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from _common import Figure, Report
from serving import (
    Contender,
    Load,
    Modelyard,
    Series,
    Target,
    ensure_wrk,
    measure,
    mlflow_server,
)


def deploy_import(yard: Modelyard, name: str, folder: Path) -> dict[str, Any]:
    body = {"project": str(folder), "model_format": "mlflow", "model_path": "."}
    outcome: dict[str, Any] = yard.api("POST", f"/api/v1/models/{name}/deploy", body)
    return outcome


def report(results: dict[tuple[str, int], Series], params: dict[str, Any]) -> Report:
    rep = Report("imports_mlflow", params)
    base: dict[tuple[str, int], Figure] = {}
    for (name, c), series in sorted(results.items(), key=lambda kv: kv[0][0] != "mlflow serve"):
        rps = Figure(f"{name} c={c} req/s", "req/s", [r.rps for r in series.runs])
        rps.cpu_s = [r.server_cpu_s for r in series.runs]
        p50 = Figure(f"{name} c={c} p50", "ms", [r.p50_ms for r in series.runs])
        if name == "mlflow serve":
            base[("rps", c)], base[("p50", c)] = rps, p50
        rep.add(rps, base.get(("rps", c)) if name != "mlflow serve" else None)
        rep.add(p50, base.get(("p50", c)) if name != "mlflow serve" else None)
    return rep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")])
    args = parser.parse_args()
    args.concurrency = args.concurrency or [1, 8, 64]
    console = Console()
    info: dict[str, Any] = {}
    results: dict[tuple[str, int], Series] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-mlflow-") as raw:
        tmp = Path(raw)
        load = Load(ensure_wrk(console), tmp)
        from sklearn.datasets import load_breast_cancer

        features = [float(v) for v in load_breast_cancer().data[0]]
        with mlflow_server(tmp, features, console, info) as (mlflow_target, mlflow_pids):
            folder = tmp / "mlflow-model"  # what mlflow_server saved and serves
            split_body = mlflow_target.body
            columns = orjson.loads(split_body)["dataframe_split"]["columns"]
            row_body = orjson.dumps(dict(zip(columns, features, strict=True)))
            with Modelyard(tmp) as yard:
                outcome = deploy_import(yard, "bc", folder)
                info["modelyard_build_s"] = outcome.get("build", {}).get("durationS")
                url = f"{yard.base}/api/v1/models/bc/predict"
                contenders = [
                    Contender("mlflow serve", mlflow_target, mlflow_pids),
                    Contender("modelyard split", Target(url, split_body, yard.auth), yard.pids()),
                    Contender("modelyard row", Target(url, row_body, yard.auth), yard.pids()),
                ]
                measure(load, contenders, args, results)
    params = {**vars(args), **info, "generator": load.name}
    rep = report(results, params)
    rep.console.print(rep.table())
    console.print(f"written to {rep.write()}")


if __name__ == "__main__":
    main()
