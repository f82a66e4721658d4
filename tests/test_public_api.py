"""The public surface: exactly these names, all importable, and a light ``import modelyard``."""

from __future__ import annotations

import subprocess
import sys

import modelyard
import modelyard.cdsw

EXPECTED = [
    "CurrentRun",
    "NotRecordedWarning",
    "__version__",
    "call_model",
    "current_identity",
    "current_run",
    "errors",
    "flush",
    "iter_metrics",
    "model_metrics",
    "read_distribution",
    "read_metrics",
    "read_metrics_frame",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_file",
    "track_metric",
    "track_metrics",
    "upload_reference",
]

REFERENCE_NAMES = [
    "call_model",
    "dev_model_deployment_crn",
    "model_metrics",
    "read_metrics",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_file",
    "track_metric",
    "track_metrics",
]
# cdsw's own: the dev deployment (an attribute) and read_metrics (aggregates' uuid "", not None)
CDSW_OWN = {"dev_model_deployment_crn", "read_metrics"}


def test_all_is_exactly_the_public_surface() -> None:
    assert modelyard.__all__ == EXPECTED
    for name in EXPECTED:
        assert getattr(modelyard, name) is not None
    assert modelyard.errors.ModelyardError.__module__ == "modelyard.errors"


def test_star_import_gives_every_name() -> None:
    namespace: dict[str, object] = {}
    exec("from modelyard import *", namespace)
    assert set(EXPECTED) <= set(namespace)


def test_cdsw_offers_the_reference_names_and_the_same_functions() -> None:
    assert sorted(modelyard.cdsw.__all__) == REFERENCE_NAMES
    for name in set(REFERENCE_NAMES) - CDSW_OWN:
        assert getattr(modelyard.cdsw, name) is getattr(modelyard, name)


def test_import_modelyard_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, modelyard, modelyard.cdsw; "
        "print(','.join(m for m in ('pandas', 'psycopg', 'httpx', 'numpy', 'sqlite3', "
        "'croniter') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
