"""What an import hands to the build: the entry module it generated and how to build it.

A model users already have (an MLflow model folder, an ONNX file, a scikit-learn file, the files an
experiment run kept) becomes a normal build: the folder is copied to a staging folder, a small
generated entry module that loads the model and defines ``predict`` (and ``predict_batch`` where
the format batches) is written into it, and the ordinary builder snapshots, installs, smoke-tests
and records it. So rollback, logs, metrics and monitors work unchanged, and the snapshot holds
exactly what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENTRY_FILE", "ImportPlan"]

# The generated entry module's file name inside the staged folder. A name no project is likely to
# hold; staging refuses to overwrite an existing file of that name.
ENTRY_FILE = "modelyard_entry.py"


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """How to build an imported model.

    ``entry_source`` is written to ``ENTRY_FILE`` in the staged folder; ``function`` and
    ``batch_function`` name what it defines; ``requirements`` is a requirements file relative to
    the staged folder (None: the base environment); ``example`` is the smoke test's input (None:
    no smoke call); ``source`` is what the build records as where it came from (``builds.source``).
    """

    kind: str
    entry_source: str
    function: str = "predict"
    batch_function: str | None = None
    requirements: str | None = None
    example: Any = None
    source: dict[str, Any] = field(default_factory=dict)
