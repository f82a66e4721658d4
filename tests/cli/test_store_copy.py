"""``modelyard store copy``: the counts table (or JSON), and errors as one line with exit 2."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from _wait import wait_until
from modelyard.cli import main
from modelyard.registry import Registry
from modelyard.store import Identity, Prediction, open_store


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["store", "copy", *args])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.fixture
def home_store(modelyard_home: Path) -> Path:
    with open_store() as store:
        Registry(store).create_model("churn")
        who = Identity("crn:m/1", "crn:b/1", "crn:d/1")
        store.write_predictions(
            [Prediction(f"u{i}", who, 1_000 + i, 1_000 + i, {"x": i}) for i in range(25)]
        )
    return modelyard_home


def test_copy_prints_counts_per_table_and_json_for_scripts(
    home_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "--to", str(tmp_path / "new-home"), "--batch-size", "10")
    assert code == 0, err
    lines = out.replace("│", " ").splitlines()  # plain rows, or a table's cells
    assert any(line.split() == ["predictions", "25", "25", "25", "ok"] for line in lines), out
    assert any(line.split() == ["models", "1", "1", "1", "ok"] for line in lines), out
    assert "every count matches" in err
    assert "predictions: 25 of 25 rows" in err  # progress goes to stderr, not into the table

    code, out, err = _run(
        capsys, "--from", str(tmp_path / "new-home"), "--to", f"sqlite:///{tmp_path}/b.db", "--json"
    )
    assert code == 0, err
    data = orjson.loads(out)
    assert data["ok"] is True and data["resumed"] is False
    assert data["source"] == str(tmp_path / "new-home" / "modelyard.db")
    by_table = {t["table"]: t for t in data["tables"]}
    assert by_table["predictions"] == {
        "table": "predictions",
        "source": 25,
        "target": 25,
        "copied": 25,
        "ok": True,
    }
    assert err == ""  # --json: nothing but the JSON


def test_copy_errors_are_one_line_and_exit_2(
    home_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "--to", str(tmp_path / "copy.db"))[0] == 0
    code, out, err = _run(capsys, "--to", str(tmp_path / "copy.db"))
    assert code == 2 and out == ""
    assert err.startswith("error: the target") and "not empty" in err
    code, _, err = _run(capsys, "--from", str(tmp_path / "missing"), "--to", str(tmp_path / "x"))
    assert code == 2 and "holds no modelyard.db" in err


@pytest.mark.slow
def test_ctrl_c_stops_a_copy_that_the_same_command_then_finishes(
    home_store: Path, tmp_path: Path
) -> None:
    with open_store() as store:  # enough rows that the copy is still running at Ctrl-C
        who = Identity("crn:m/2", "crn:b/2", "crn:d/2")
        store.write_predictions(
            [Prediction(f"v{i}", who, 5_000 + i, 5_000 + i, {"x": i}) for i in range(20_000)]
        )
    exe = str(Path(sys.executable).parent / "modelyard")
    target = tmp_path / "copy.db"
    command = [exe, "store", "copy", "--to", str(target), "--batch-size", "5"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _copied(target) >= 200, timeout_s=60, what="the copy to commit batches")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "error: interrupted; what was committed stays: run the same command again" in err
    stopped_at = _copied(target)
    assert 0 < stopped_at < 20_000

    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    predictions = next(t for t in report["tables"] if t["table"] == "predictions")
    assert report["resumed"] and predictions["source"] == predictions["target"] == 20_025
    assert predictions["copied"] == 20_025 - stopped_at


def _copied(path: Path) -> int:
    """Rows of ``predictions`` the copy into ``path`` has committed (0 before it starts)."""
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        try:
            row = conn.execute(
                "SELECT copied FROM modelyard_copy_progress WHERE table_name = 'predictions'"
            ).fetchone()
        except sqlite3.OperationalError:  # the marker is not there yet
            return 0
    return int(row[0]) if row else 0
