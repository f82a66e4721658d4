"""``modelyard monitors ...``, ``modelyard alerts`` and ``python -m modelyard.monitors`` against a
real SQLite store in the test's home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from _cli import run_main
from modelyard.store.base import MetricsStore

from .conftest import HOUR, T0, reference_frame, write_stream


def test_reference_upload_run_and_alerts(
    sdk_store: MetricsStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = write_stream(sdk_store, 3, drifted=frozenset({1, 2}))
    dep = stream.ident.deployment_crn
    csv = tmp_path / "training.csv"
    reference_frame().to_csv(csv, index=False)
    code, out, err = run_main(
        capsys, "monitors", "reference", "upload", "--deployment", dep, str(csv), "--json"
    )
    assert (code, err) == (0, "")
    assert orjson.loads(out)["rows"] == 4000
    spec = tmp_path / "churn.yaml"
    spec.write_text(
        f"deployment: {dep}\nreference: {{stored: training}}\nfeatures: [tenure, charges, plan]\n"
        "categorical: [plan]\nprediction: probability\nlabel: churned\nwindow: 1h\n"
        f"start: {T0}\nalerts: ['drift.flagged > 0']\n"
    )
    window = f"{T0}..{T0 + 3 * HOUR}"
    code, out, err = run_main(capsys, "monitors", "run", str(spec), "--window", window, "--json")
    assert (code, err) == (0, "")
    results = orjson.loads(out)
    assert [r["start_ms"] for r in results] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert results[1]["metrics"]["drift.flagged_features"] == ["tenure"]

    code, out, _ = run_main(capsys, "alerts", "--json")
    (alert,) = orjson.loads(out)
    assert (alert["monitor"], alert["rule"], alert["state"]) == (
        "churn",
        "drift.flagged > 0",
        "firing",
    )
    code, out, err = run_main(capsys, "alerts")
    # Piped, the title goes to stderr and stdout keeps plain rows (cli/output.py).
    assert code == 0 and "Firing alerts" in out + err and "firing" in out
    code, out, _ = run_main(capsys, "monitors", "reference", "list", "--json")
    assert [r["name"] for r in orjson.loads(out)] == ["training"]


def test_bad_spec_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("deployment: crn:modelyard:deployment/x\nprediction: p\nwindow: often\n")
    code, out, err = run_main(capsys, "monitors", "run", str(spec))
    assert code == 2 and out == ""
    assert "window" in err and "often" in err


def test_python_m_runs_a_spec_in_its_own_process(sdk_store: MetricsStore, tmp_path: Path) -> None:
    stream = write_stream(sdk_store, 2)
    spec = tmp_path / "acc.yaml"
    spec.write_text(
        f"deployment: {stream.ident.deployment_crn}\nprediction: probability\nlabel: churned\n"
        "window: 1h\nmetrics: [classification, label_coverage]\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard.monitors",
            "run",
            str(spec),
            "--window",
            f"{T0}..{T0 + 2 * HOUR}",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = orjson.loads(done.stdout)
    assert [r["start_ms"] for r in results] == [T0, T0 + HOUR]
    assert results[0]["metrics"]["n"] > 0 and "roc_auc" in results[0]["metrics"]
    # With MODELYARD_URL set the monitor talks to that server only (tests/monitors/test_remote.py
    # runs one); with nothing listening it fails in one line naming the URL, and opens no database.
    job_env = {**os.environ, "MODELYARD_URL": "http://127.0.0.1:9", "MODELYARD_API_KEY": "x"}
    refused = subprocess.run(
        [sys.executable, "-m", "modelyard.monitors", "run", str(spec)],
        capture_output=True, text=True, env=job_env, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "http://127.0.0.1:9" in refused.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "modelyard.monitors", "run", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "none.yaml" in bad.stderr
