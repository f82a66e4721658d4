"""``modelyard demo --quick`` end to end: a real server, replicas, job runs and webhook.

The run's claims are checked against what it left in its home: the monitor's aggregate records
read from the store itself (not from the demo's own summary), the alerts table, the webhook
bodies the demo's receiver got, the report; and no process of the demo outlives it, whether it
ends by itself or by Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from modelyard.demo.story import prepare_home
from modelyard.errors import InvalidInput

pytestmark = pytest.mark.slow

EXE = Path(sys.executable).with_name("modelyard")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("MODELYARD_HOME", "MODELYARD_URL", "MODELYARD_API_KEY", "MODELYARD_DATABASE_URL"):
        env.pop(name, None)
    return env


def _processes_using(home: Path) -> list[str]:
    """Command lines of live processes that mention ``home`` (server, replicas, job runs)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info["environ"] or {}
        except (psutil.Error, OSError):
            continue
        mine = str(home) in cmd or env.get("MODELYARD_HOME") == str(home)
        if mine and proc.pid != os.getpid():
            found.append(f"{proc.pid}: {cmd[:200]}")
    return found


def test_quick_demo_tells_the_whole_story(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    started = time.monotonic()
    done = subprocess.run(
        [str(EXE), "demo", "--quick", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(),
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Report:" in done.stdout and str(home / "report.html") in done.stdout
    results = json.loads((home / "results.json").read_text())
    assert all(results["checks"].values()), results["checks"]
    info = results["info"]
    injected = info["injected_ms"]

    # The monitor's windows, read from the demo's store directly.
    from modelyard.store import open_store
    from modelyard.store.base import Query, RecordKind

    store = open_store(f"sqlite:///{home / 'modelyard.db'}")
    try:
        query = Query(deployment_crn=info["deployment"], kinds=frozenset([RecordKind.AGGREGATE]))
        records, _ = store.read(query)
    finally:
        store.close()
    windows = [w for w in records if w.metrics.get("n") and w.start_ms < info["traffic_end_ms"]]
    before = [w for w in windows if w.end_ms <= injected]
    after = [w for w in windows if w.start_ms >= injected]
    assert len(before) >= 2 and len(after) >= 2
    assert len(before) + len(after) == len(windows)  # no window straddles the injection
    for w in windows:  # AUC with its interval in every window, over every label
        assert w.metrics["roc_auc_ci_low"] <= w.metrics["roc_auc"] <= w.metrics["roc_auc_ci_high"]
        assert w.metrics["label_coverage"] == 1.0, (w.start_ms, w.metrics["labelled"])
    assert not any(w.metrics["drift.flagged_features"] for w in before)
    assert all(w.metrics["drift.flagged_features"] for w in after)
    assert min(w.metrics["roc_auc"] for w in before) > max(w.metrics["roc_auc"] for w in after)

    # The alert fired and reached the demo's webhook receiver.
    rules = {a["rule"] for a in results["alerts"] if a["state"] == "firing"}
    assert "drift.flagged > 0" in rules
    assert any(r["rule"] == "drift.flagged > 0" for r in results["received"])
    assert all(r["first_window_start_ms"] >= injected for r in results["received"])

    # Every prediction went through POST /model and is in the CRM with its uuid.
    assert info["calls"] == info["crm_counts"]["predictions"] > 500
    assert info["crm_counts"]["labelled"] == info["calls"]
    assert info["final_run_state"] == "succeeded"

    report = (home / "report.html").read_text()
    assert "Plotly.newPlot" in report and info["deployment"] in report
    assert not (home / "server.json").exists()  # the server stopped cleanly
    assert _processes_using(home) == []
    print(f"modelyard demo --quick took {seconds:.1f} s")
    assert seconds < 90  # under a minute on an idle machine; slack for a loaded CI runner


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    proc = subprocess.Popen(
        [str(EXE), "demo", "--quick", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 60
        # Wait until the deployment's replicas and the job exist: the story is under way.
        while time.monotonic() < deadline and not (home / "crm.db").exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert (home / "crm.db").exists()
        assert _processes_using(home), "the server and replicas should be running"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    deadline = time.monotonic() + 10
    while _processes_using(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_using(home) == []


def test_home_of_something_else_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not empty"):
        prepare_home(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    fresh = prepare_home(tmp_path / "new")
    (fresh / "modelyard.db").write_text("old run")
    again = prepare_home(tmp_path / "new")  # a previous demo's home is replaced
    assert not (again / "modelyard.db").exists()
