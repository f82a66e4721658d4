"""The readable, pipeable CLI against a real ``modelyard server`` process, output not a terminal
(captured, as in a pipe): complete CRNs after ``deploy``, complete run ids and local ISO times in
listings, run and build id prefixes resolved by the server, and model names through
``MODELYARD_URL`` limited to what the key may see."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from _cli import run_main as cli
from _wait import wait_until
from server.conftest import PREDICT, ServerProcess, server_process  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

# A run names itself by a prefix with its own key (allowed), and another prefix (refused
# without looking: a run key must not learn which other runs exist).
HELLO = """
import os

import httpx

import modelyard

print("hello from the run", flush=True)
run = modelyard.current_run()
key = {"Authorization": "Bearer " + os.environ["MODELYARD_API_KEY"]}
own = run.run_id.rsplit("/", 1)[-1][:8]
other = "ffff" if not own.startswith("ffff") else "0000"
for name, prefix in (("own", own), ("other", other)):
    print(name, httpx.get(f"{run.url}/api/v1/runs/{prefix}", headers=key).status_code, flush=True)
"""
ISO_LOCAL = "+05:30"  # Asia/Kolkata: a zone that is not UTC, so UTC passed off as local shows


@pytest.fixture(autouse=True)
def kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def ok(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = cli(capsys, *args)
    assert code == 0, (args, out, err)
    return out


def table(out: str) -> list[dict[str, str]]:
    """Piped output: a tab-separated header line, then one line per row."""
    header, *lines = out.splitlines()
    names = header.split("\t")
    return [dict(zip(names, line.split("\t"), strict=True)) for line in lines]


def pairs(out: str) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in out.splitlines())


def wait_for(predicate: Callable[[], Any]) -> Any:
    """A CLI call per poll against a real server: poll gently, allow a loaded machine a minute."""
    return wait_until(predicate, timeout_s=60.0, step_s=0.2)


def test_models_output_is_complete_and_names_and_prefixes_work(
    server_process: Callable[[], ServerProcess],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = server_process()
    project = tmp_path / "churn"
    project.mkdir()
    (project / "predict.py").write_text(textwrap.dedent(PREDICT))
    deployed = pairs(ok(capsys, "models", "deploy", "churn", "--project-dir", str(project)))
    first_build = deployed["build"]
    assert len(deployed["deployment"]) == len("crn:modelyard:deployment/") + 36  # not cut to ...
    (project / "predict.py").write_text(textwrap.dedent(PREDICT).replace("* 2}", "* 3}"))
    second = pairs(ok(capsys, "models", "deploy", "churn", "--project-dir", str(project)))
    assert second["build"] != first_build

    models = table(ok(capsys, "models", "list"))
    assert models == [
        {
            "name": "churn",
            "crn": deployed["model"],
            "active deployment": second["deployment"],
            "replicas": "1",
            "project": "admin/default",  # owner/name, not the CRN the API answers
        }
    ]
    builds = table(ok(capsys, "models", "builds", "churn"))
    assert [b["crn"] for b in builds] == [second["build"], first_build]
    assert all(b["created"].endswith(ISO_LOCAL) for b in builds)  # created_ms as local ISO

    # --build takes an unambiguous prefix of the build's uuid, resolved by the server.
    uuid = first_build.rsplit("/", 1)[-1]
    back = pairs(ok(capsys, "models", "rollback", "churn", "--build", uuid[:8]))
    assert back["build"] == first_build
    code, _, err = cli(capsys, "models", "rollback", "churn", "--build", uuid[:3])
    assert code == 2 and f"build '{uuid[:3]}' is too short" in err

    # Names through MODELYARD_URL: the server resolves them; a model-scoped key sees its model.
    ok(capsys, "models", "predict", "churn", '{"x": 4}')
    created = orjson.loads(
        ok(capsys, "keys", "create", "--name", "reader", "--scope", deployed["model"], "--json")
    )
    ok(capsys, "models", "deploy", "other", "--project-dir", str(project))
    monkeypatch.setenv("MODELYARD_URL", server.url)
    monkeypatch.setenv("MODELYARD_API_KEY", created["token"])

    def recorded() -> Any:
        out = ok(capsys, "metrics", "read", "--deployment", "churn", "--json")
        return orjson.loads(out)

    records = wait_for(recorded)
    assert {r["modelDeploymentCrn"] for r in records} == {back["deployment"]}
    code, _, err = cli(capsys, "metrics", "read", "--model", "chrun", "--json")
    assert code == 2 and "did you mean 'churn'?" in err
    assert f"churn's CRN is {deployed['model']}" in " ".join(err.split())
    assert "other" not in err  # the scoped key does not learn of other models


def test_runs_are_listed_whole_and_named_by_prefix(
    server_process: Callable[[], ServerProcess],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server_process()
    project = tmp_path / "jobs"
    project.mkdir()
    (project / "hello.py").write_text(textwrap.dedent(HELLO))
    code, _, err = cli(
        capsys, "jobs", "create", "hello", "--project-dir", str(project), "--script", "hello.py",
        "--every", "5",
    )  # fmt: skip
    assert code == 2 and "--every='5' has no unit; add a unit (30s, 5m, 1h" in err
    ok(capsys, "jobs", "create", "hello", "--project-dir", str(project), "--script", "hello.py",
       "--manual")  # fmt: skip
    run = pairs(ok(capsys, "jobs", "run", "hello"))
    uuid = run["uuid"]
    assert len(uuid) == 36 and run["queued"].endswith(ISO_LOCAL)

    def finished() -> Any:
        found = table(ok(capsys, "jobs", "runs", "hello"))
        return found if found[0]["state"] == "succeeded" else None

    runs = wait_for(finished)
    assert runs[0]["uuid"] == uuid  # the whole id, ready for the next command
    assert runs[0]["scheduled"].endswith(ISO_LOCAL)
    assert runs[0]["duration_ms"].isdigit()  # a duration, not a time

    log = ok(capsys, "jobs", "logs", uuid[:8])
    assert "hello from the run\nown 200\nother 404\n" in log
    shown = pairs(ok(capsys, "jobs", "show-run", uuid[:6]))
    assert shown["uuid"] == uuid and shown["ended"].endswith(ISO_LOCAL)
    code, _, err = cli(capsys, "jobs", "logs", uuid[:3])
    assert code == 2 and "too short" in err and "at least 4 characters" in err
    unknown = "0000" if not uuid.startswith("0000") else "ffff"
    code, _, err = cli(capsys, "jobs", "show-run", unknown)
    assert code == 2 and f"run '{unknown}' is not known, or not in a project you can see" in err
    listed = table(ok(capsys, "jobs", "list"))
    hello = next(j for j in listed if j["name"] == "hello")
    assert hello["last_slot"].endswith(ISO_LOCAL)
