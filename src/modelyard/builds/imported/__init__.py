"""Imports: models users already have (MLflow, ONNX, scikit-learn files) and the files an
experiment run kept, made into normal builds.

- ``_plan.py``: ``ImportPlan`` (what an import hands the build) and ``ENTRY_FILE``;
- ``staging.py``: the deployed folder copied to a staging folder, run files written in, the
  generated entry module written (``stage``, ``discard``);
- ``onnx.py``, ``sklearn.py``, ``mlflow.py``: one planner per format;
- ``onnx_model.py``, ``sklearn_model.py``: what the generated entry imports in the replica.

See ``docs/importing.md``.
"""

from __future__ import annotations

from modelyard.builds.imported._plan import ENTRY_FILE, ImportPlan
from modelyard.builds.imported.staging import FORMATS, ImportRequest, Staged, discard, stage

__all__ = ["ENTRY_FILE", "FORMATS", "ImportPlan", "ImportRequest", "Staged", "discard", "stage"]
