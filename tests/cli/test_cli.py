"""The ``modelyard`` command, driven in-process through click's runner against a real store."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import modelyard
from _cli import run, run_main
from modelyard.clock import now_ms
from modelyard.ids import new_crn
from modelyard.store import Identity, Prediction, open_store

DAY_MS = 86_400_000


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> str:
    crn = new_crn("deployment")
    monkeypatch.setenv("MODELYARD_DEPLOYMENT_CRN", crn)

    @modelyard.model_metrics
    def predict(args: dict[str, int]) -> int:
        modelyard.track_metrics({"x": args["x"], "segment": "a" if args["x"] % 2 else "b"})
        return args["x"] * 2

    replies = [predict({"x": i}) for i in range(30)]
    modelyard.track_delayed_metrics({"actual": 1}, replies[0]["uuid"])
    return crn


def test_version_prints_the_package_version() -> None:
    result = run("version")
    assert result.exit_code == 0
    assert result.output.strip() == modelyard.__version__


def test_entry_point_is_installed() -> None:
    exe = Path(sys.executable).parent / "modelyard"
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "store" in done.stdout and "metrics" in done.stdout


def test_settings_json_lists_every_setting() -> None:
    result = run("settings", "--json")
    names = {row["name"] for row in orjson.loads(result.stdout)}
    assert {"home", "database_url", "raw_horizon", "max_record_bytes"} <= names


def test_store_info_json_on_a_fresh_home(modelyard_home: Path) -> None:
    result = run("store", "info", "--json")
    assert result.exit_code == 0, result.output
    info = orjson.loads(result.stdout)
    assert info["backend"] == "sqlite"
    assert info["predictions"] == 0
    assert info["schema_version"] >= 1
    assert str(modelyard_home) in info["location"]


def test_store_info_table_for_people(deployment: str) -> None:
    result = run("store", "info")
    assert result.exit_code == 0
    assert "predictions" in result.output and "30" in result.output


def test_metrics_read_json_returns_reference_records(deployment: str) -> None:
    result = run("metrics", "read", "--deployment", deployment, "--format", "json")
    records = orjson.loads(result.stdout)
    assert len(records) == 30
    assert set(records[0]) == {
        "modelDeploymentCrn",
        "modelBuildCrn",
        "modelCrn",
        "startTimeStampMs",
        "endTimeStampMs",
        "predictionUuid",
        "metrics",
    }
    assert records[0]["metrics"]["actual"] == 1


def test_metrics_read_csv_has_one_column_per_metric(deployment: str) -> None:
    result = run("metrics", "read", "--deployment", deployment, "--format", "csv", "--limit", "5")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 5
    assert {"kind", "predictionUuid", "x", "segment"} <= set(rows[0])


def test_metrics_read_table_says_how_many(deployment: str) -> None:
    result = run("metrics", "read", "--deployment", deployment, "--since", "1h")
    assert result.exit_code == 0
    assert "30 records" in result.output


def test_metrics_read_without_an_identifier_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_main(capsys, "metrics", "read", "--format", "json")
    assert code == 2
    assert "--deployment" in err


def test_metrics_read_bad_time_names_the_option(
    capsys: pytest.CaptureFixture[str], deployment: str
) -> None:
    code, _, err = run_main(capsys, "metrics", "read", "--deployment", deployment, "--since", "x")
    assert code == 2
    assert "--since='x'" in err


def test_usage_errors_exit_2_with_clicks_message(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "metrics", "read", "--format", "xml")
    assert code == 2
    assert "xml" in err


def test_store_rollup_folds_old_records_and_info_shows_buckets() -> None:
    identity = Identity(new_crn("model"), new_crn("build"), new_crn("deployment"))
    old = now_ms() - 3 * DAY_MS
    with open_store() as store:
        store.write_predictions(
            [
                Prediction(str(i), identity, old + i * 1000, old + i * 1000 + 5, {"v": i})
                for i in range(100)
            ]
        )
    result = run("store", "rollup", "--horizon", "1d", "--json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["raw_rolled"] == 100
    info = orjson.loads(run("store", "info", "--json").stdout)
    assert info["predictions"] == 0
    assert sum(info["rollup_buckets"].values()) >= 1
    again = orjson.loads(run("store", "rollup", "--horizon", "1d", "--json").stdout)
    assert again["raw_rolled"] == 0
