"""``modelyard experiments`` against a real ``modelyard server`` process: the project folder is
uploaded, the script gets its arguments exactly as typed (options included, ``--`` honoured),
metrics and a kept file come back through ``show``, ``list``, ``compare``, ``files`` and
``download``; ``--follow`` prints the log as the run goes, ``--wait`` exits 1 for a failed run,
``cancel`` stops a running one; bad input (a script outside the folder, an ignored script, an
unknown run, a missing file, an existing download target) is refused by value and changes
nothing."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from _wait import wait_until
from modelyard.cli import main
from server.conftest import ServerProcess, server_process  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

TRAIN = """
import json
import sys

import modelyard

args = sys.argv[1:]
print("args", json.dumps(args), flush=True)
lr = float(args[args.index("--lr") + 1]) if "--lr" in args else 0.1
for epoch in range(3):
    modelyard.track_metric("loss", 1.0 / (epoch + 1) / lr)
modelyard.track_metrics({"accuracy": min(0.99, 0.5 + lr), "model": "tree"})
with open("out/weights.bin", "wb") as out:
    out.write(bytes(range(256)) * 4)
modelyard.track_file("out/weights.bin")
if "--fail" in args:
    sys.exit(3)
print("trained", flush=True)
"""

SLEEPER = """
import time
print("sleeping", flush=True)
time.sleep(120)
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``modelyard ARGS`` through ``main``; stderr with its whitespace made single spaces."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, " ".join(captured.err.split())


def ok_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, (args, out, err)
    return orjson.loads(out)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "iris"
    (root / "out").mkdir(parents=True)
    (root / "train.py").write_text(textwrap.dedent(TRAIN))
    (root / "sleeper.py").write_text(textwrap.dedent(SLEEPER))
    (root / "out" / ".keep").write_text("")
    (root / "notes.log").write_text("ignored\n")
    (root / ".modelyardignore").write_text("*.log\n")
    return root


def test_experiments_cli_against_a_real_server(
    server_process: Callable[[], ServerProcess],  # noqa: F811
    folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server_process()
    d = str(folder)
    # Arguments after SCRIPT go to it as typed, ours are taken before or after it.
    first = ok_json(
        capsys,
        "experiments", "run", "--project-dir", d, "train.py",
        "--lr", "0.25", "-v", "--depth=3", "--name", "lr-0.25", "--wait",
    )  # fmt: skip
    assert first["state"] == "succeeded", first
    assert first["args"] == ["--lr", "0.25", "-v", "--depth=3"]
    assert first["name"] == "lr-0.25" and first["script"] == "train.py"
    assert first["exitCode"] == 0 and first["codeDigest"]
    assert first["metrics"] == {"loss": pytest.approx(4 / 3), "accuracy": 0.75, "model": "tree"}
    [kept] = first["files"]
    assert (kept["path"], kept["state"], kept["size"]) == ("out/weights.bin", "kept", 1024)
    # After '--' even our own option names go to the script; --follow prints the log live.
    monkeypatch.chdir(folder)  # --project-dir defaults to the current folder
    code, out, err = cli(
        capsys, "experiments", "run", "train.py", "--follow", "--", "--lr", "0.5", "--name", "x"
    )
    assert code == 0, (out, err)
    assert 'args ["--lr", "0.5", "--name", "x"]' in out and "trained" in out
    listed = ok_json(capsys, "experiments", "list")
    assert [e["name"] for e in listed] == [None, "lr-0.25"]  # newest first
    second_uuid = listed[0]["uuid"]
    assert listed[0]["args"] == ["--lr", "0.5", "--name", "x"]
    assert listed[0]["codeDigest"] == first["codeDigest"]  # same folder, same code version
    code, out, _ = cli(capsys, "experiments", "list")
    assert code == 0 and first["uuid"] in out and "accuracy=0.75" in out
    code, out, _ = cli(capsys, "experiments", "show", first["uuid"][:6])
    shown = dict(line.split("\t", 1) for line in out.splitlines())
    assert shown["args"] == "--lr 0.25 -v --depth=3" and shown["metrics.accuracy"] == "0.75"
    assert shown["codeDigest"] == first["codeDigest"] and shown["id"] == first["id"]
    assert shown["files"] == "out/weights.bin (kept, 1024 B)"

    # Side by side: a column per run, a row per metric (last values), args and code version.
    compared = ok_json(capsys, "experiments", "compare", first["uuid"][:8], second_uuid)
    assert compared["metrics"] == ["accuracy", "loss", "model"]
    assert [r["uuid"] for r in compared["runs"]] == [first["uuid"], second_uuid]
    assert [v for _, v in compared["runs"][0]["metricHistory"]["loss"]] == pytest.approx(
        [4, 2, 4 / 3]
    )
    code, out, _ = cli(capsys, "experiments", "compare", first["uuid"], second_uuid)
    lines = {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()}
    assert lines["accuracy"] == ["0.75", "0.99"] and lines["model"] == ["tree", "tree"]
    assert lines["args"] == ["--lr 0.25 -v --depth=3", "--lr 0.5 --name x"]

    # Files: listed, downloaded byte for byte, never over an existing file without --force.
    [listed_file] = ok_json(capsys, "experiments", "files", first["uuid"])
    assert listed_file == kept
    target = tmp_path / "w.bin"
    wrote = ok_json(
        capsys, "experiments", "download", first["uuid"], "out/weights.bin", "-o", str(target)
    )
    assert target.read_bytes() == bytes(range(256)) * 4
    assert (wrote["size"], wrote["sha256"], wrote["output"]) == (1024, kept["sha256"], str(target))
    code, _, err = cli(
        capsys, "experiments", "download", first["uuid"], "out/weights.bin", "-o", str(target)
    )
    assert code == 2 and "exists; give --force" in err and str(target) in err
    code, _, err = cli(capsys, "experiments", "download", first["uuid"], "out/nothing.bin")
    assert code == 2 and "out/nothing.bin" in err and "out/weights.bin" in err, err
    assert not (folder / "nothing.bin").exists()
    code, out, _ = cli(capsys, "experiments", "logs", first["uuid"])
    assert code == 0 and 'args ["--lr", "0.25", "-v", "--depth=3"]' in out and "trained" in out
    code, out, _ = cli(capsys, "experiments", "logs", first["uuid"], "--tail", "1")
    assert code == 0 and len(out.splitlines()) == 1
    as_json = ok_json(capsys, "experiments", "logs", first["uuid"], "--tail", "1")
    assert as_json == {"run": first["id"], "state": "succeeded", "log": out}

    # A failing script: --wait says so with exit status 1 and the run's state.
    code, out, _ = cli(capsys, "experiments", "run", "train.py", "--fail", "--wait", "--json")
    failed = orjson.loads(out)
    assert code == 1 and failed["state"] == "failed" and failed["exitCode"] == 3

    # Cancel a running one.
    sleeping = ok_json(capsys, "experiments", "run", "sleeper.py", "--name", "sleepy")
    assert sleeping["state"] in ("queued", "running")

    def started() -> bool:
        code, out, _ = cli(capsys, "experiments", "logs", sleeping["uuid"])
        return code == 0 and "sleeping" in out

    wait_until(started, timeout_s=60, step_s=0.3)
    code, out, _ = cli(capsys, "experiments", "cancel", sleeping["uuid"])
    assert code == 0 and "cancelled" in out
    assert ok_json(capsys, "experiments", "show", sleeping["uuid"])["state"] == "cancelled"

    # Bad input: refused by value, nothing made.
    before = len(ok_json(capsys, "experiments", "list"))
    code, _, err = cli(capsys, "experiments", "run", str(tmp_path / "elsewhere.py"))
    assert code == 2 and "elsewhere.py" in err and "is not inside --project-dir" in err
    code, _, err = cli(capsys, "experiments", "run", "missing.py")
    assert code == 2 and "'missing.py' is not a file inside --project-dir" in err, err
    (folder / "run.log").write_text("print('x')\n")
    code, _, err = cli(capsys, "experiments", "run", "run.log")
    assert code == 2 and "left out of the upload" in err and "*.log" in err
    code, _, err = cli(capsys, "experiments", "run", "train.py", "--timeout", "1ms")
    assert code == 2 and "timeout" in err
    code, _, err = cli(capsys, "experiments", "show", "ffffffff")
    assert code == 2 and "ffffffff" in err
    assert len(ok_json(capsys, "experiments", "list")) == before
