"""``modelyard users``, ``teams`` and ``projects``, the CLI config's default project and
``--project`` / ``--project-dir``, run in-process against a real server on a loopback socket
(``MODELYARD_URL`` and the admin key, as from a laptop)."""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from _cli import run_main
from _live import admin_key, live_server


@pytest.fixture
def server(modelyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with live_server(modelyard_home, jobs=False) as url:
        monkeypatch.setenv("MODELYARD_URL", url)
        monkeypatch.setenv("MODELYARD_API_KEY", admin_key(modelyard_home))
        yield url


def ok(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = run_main(capsys, *args)
    assert code == 0, (args, out, err)
    return out


def ok_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    return orjson.loads(ok(capsys, *args, "--json"))


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """stderr of a command that must fail with a ModelyardError (exit 2), on one line."""
    code, out, err = run_main(capsys, *args)
    assert code == 2, (args, out, err)
    return " ".join(err.split())


def test_users_and_teams(
    server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = ok_json(capsys, "users", "create", "bob", "--email", "bob@example.com")
    assert bob["name"] == "bob" and bob["has_password"] is False
    monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse\n"))
    carol = ok_json(capsys, "users", "create", "carol", "--password-stdin")
    assert carol["has_password"] is True
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert "stdin was empty" in refused(capsys, "users", "create", "dan", "--password-stdin")

    piped = ok(capsys, "users", "list").splitlines()  # not a terminal: plain rows
    assert piped[0].split("\t")[:3] == ["name", "email", "is_admin"]
    assert sorted(line.split("\t")[0] for line in piped[1:]) == ["admin", "bob", "carol"]
    assert ok(capsys, "users", "disable", "bob").strip() == "disabled user bob"
    assert ok_json(capsys, "users", "enable", "bob")["disabled_ms"] is None
    monkeypatch.setattr(sys, "stdin", io.StringIO("battery staple\n"))
    ok(capsys, "users", "passwd", "bob", "--password-stdin")
    assert "'nobody'" in refused(capsys, "users", "disable", "nobody")

    assert ok_json(capsys, "teams", "create", "risk")["members"] == []
    assert ok_json(capsys, "teams", "add-member", "risk", "bob")["members"] == ["bob"]
    assert ok(capsys, "teams", "add-member", "risk", "carol").strip() == "team risk: bob, carol"
    assert [t["name"] for t in ok_json(capsys, "teams", "list")] == ["risk"]
    assert ok_json(capsys, "teams", "remove-member", "risk", "bob")["members"] == ["carol"]
    assert "'nobody'" in refused(capsys, "teams", "add-member", "risk", "nobody")
    ok(capsys, "teams", "delete", "risk")
    assert ok_json(capsys, "teams", "list") == []


def test_projects_sharing_and_the_default_project(
    server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ok(capsys, "users", "create", "bob")
    mine = ok_json(capsys, "projects", "create", "churn", "--description", "telco churn")
    assert mine["full_name"] == "admin/churn" and mine["role"] == "admin"
    ok(capsys, "projects", "create", "churn", "--owner", "bob")
    listed = ok_json(capsys, "projects", "list")
    assert {p["full_name"] for p in listed} >= {"admin/churn", "bob/churn", "admin/default"}

    ambiguous = refused(capsys, "projects", "show", "churn")
    assert "ambiguous" in ambiguous and "admin/churn, bob/churn" in ambiguous
    assert "'nothing-here'" in refused(capsys, "projects", "show", "nothing-here")
    shown = ok_json(capsys, "projects", "show", "admin/churn")
    assert shown["project"]["description"] == "telco churn" and shown["models"] == []

    shared = ok_json(
        capsys, "projects", "share", "admin/churn", "--user", "bob", "--role", "viewer"
    )
    assert shared["role"] == "viewer"
    people = ok_json(capsys, "projects", "collaborators", "admin/churn")
    assert ("bob", "viewer") in {(c["name"], c["role"]) for c in people}
    both = refused(capsys, "projects", "share", "admin/churn", "--user", "bob", "--team", "t",
                   "--role", "admin")  # fmt: skip
    assert "exactly one of --user and --team" in both
    ok(capsys, "projects", "unshare", "admin/churn", "--user", "bob")
    people = ok_json(capsys, "projects", "collaborators", "admin/churn")
    assert "bob" not in {c["name"] for c in people}

    assert ok_json(capsys, "projects", "use")["project"] is None
    used = ok_json(capsys, "projects", "use", "admin/churn")
    config = Path(os.environ["MODELYARD_CONFIG"])
    assert used == {"project": "admin/churn", "config": str(config)}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert orjson.loads(config.read_bytes()) == {"project": "admin/churn"}
    table = ok(capsys, "projects", "list").splitlines()
    assert [line.split("\t")[1] for line in table if line.startswith("*")] == ["admin/churn"]

    ok(capsys, "projects", "delete", "bob/churn")
    assert "'bob/churn'" in refused(capsys, "projects", "show", "bob/churn")
    ok(capsys, "projects", "use", "--clear")
    assert ok_json(capsys, "projects", "use")["project"] is None


def test_jobs_go_to_the_project_and_lists_filter_by_it(
    server: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from modelyard.registry import Registry
    from modelyard.store import open_store

    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "tick.py").write_text("print('tick')\n")
    ok(capsys, "projects", "create", "churn")
    job = ["--project-dir", str(folder), "--script", "tick.py", "--manual"]
    ok(capsys, "jobs", "create", "in-churn", *job, "--project", "admin/churn")
    ok(capsys, "jobs", "create", "in-default", *job)  # no default: the server's default project

    def names(*args: str) -> set[str]:
        return {j["name"] for j in ok_json(capsys, "jobs", "list", *args)}

    assert "in-churn" in names("--project", "churn")
    assert "in-default" not in names("--project", "churn")
    assert "in-churn" not in names("--project", "admin/default")
    ok(capsys, "projects", "use", "churn")  # stored as admin/churn
    assert "in-default" not in names() and "in-churn" in names()
    assert {"in-churn", "in-default"} <= names("--all-projects")

    churn = ok_json(capsys, "projects", "show", "churn")["project"]["crn"]
    with open_store() as store:  # models without a build: the list only needs them registered
        Registry(store).create_model("scorer", project_crn=churn)
        Registry(store).create_model("elsewhere")
    assert [m["name"] for m in ok_json(capsys, "models", "list")] == ["scorer"]
    everywhere = ok_json(capsys, "models", "list", "--all-projects")
    assert {m["name"] for m in everywhere} == {"scorer", "elsewhere"}
    table = ok(capsys, "models", "list", "--all-projects").splitlines()
    projects = {row.split("\t")[0]: row.split("\t")[-1] for row in table[1:]}
    assert projects == {"scorer": "admin/churn", "elsewhere": "admin/default"}
    clash = refused(capsys, "jobs", "list", "--project", "churn", "--all-projects")
    assert "disagree" in clash
    unknown = refused(capsys, "jobs", "list", "--project", "nope")
    assert "'nope'" in unknown


def test_a_folder_given_to_project_points_at_project_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The old meaning of ``--project`` (the folder) is refused before anything is sent."""
    advice = "--project names a Modelyard project (a name, owner/name or CRN); the folder to "
    advice += "deploy goes in --project-dir"
    old = refused(capsys, "models", "deploy", "churn", "--project", str(tmp_path))
    assert f"--project '{tmp_path}' is a folder here; {advice}" in old
    both = refused(capsys, "models", "deploy", "churn", "--project-dir", str(tmp_path),
                   "--project", str(tmp_path))  # fmt: skip
    assert advice in both
    job = refused(capsys, "jobs", "create", "j", "--project", str(tmp_path), "--manual")
    assert advice in job
    assert advice in refused(capsys, "models", "list", "--project", str(tmp_path))


def test_a_broken_config_file_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = Path(os.environ["MODELYARD_CONFIG"])
    config.write_text("[1, 2]")
    message = refused(capsys, "projects", "use")
    assert f"the CLI config '{config}' holds list, not an object" in message
    config.write_text("{not json")
    assert "is not JSON" in refused(capsys, "models", "list")


def test_alerts_and_references_filter_by_project_in_the_local_store(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``alerts`` and ``monitors reference list`` read the store itself: ``--project`` is
    resolved in the same database's registry."""
    from modelyard.registry import Registry
    from modelyard.store import open_store

    deployments = {}
    with open_store() as store:
        registry = Registry(store)
        registry.people.bootstrap()
        risk = registry.people.create_project("risk", owner="admin")
        for name, project in (("a", None), ("b", risk.crn)):
            registry.create_model(name, project_crn=project)
            build = registry.add_build(
                name, digest=name * 64, file="predict.py", function="predict",
                python=sys.executable, env_key="base", ok=True,
            )  # fmt: skip
            deployments[name] = registry.add_deployment(name, build.crn).crn
            registry.monitors.save_reference(deployments[name], "training", 1, 1, ["x"], b"{}")

    def listed(*args: str) -> set[str]:
        found = ok_json(capsys, "monitors", "reference", "list", *args)
        return {r["deployment_crn"] for r in found}

    assert listed() == set(deployments.values())
    assert listed("--project", "risk") == {deployments["b"]}
    assert listed("--project", "admin/default") == {deployments["a"]}
    assert ok_json(capsys, "alerts", "--all", "--project", "risk") == []
    assert "'nope'" in refused(capsys, "alerts", "--project", "nope")


def test_passwords_are_typed_at_a_prompt(server: str, modelyard_home: Path) -> None:
    """``users passwd NAME`` asks twice without echo; ``users passwd`` changes your own after
    the current one (the admin's is the one the first start wrote to the home)."""
    from click.testing import CliRunner

    from modelyard.cli import cli

    runner = CliRunner()
    assert runner.invoke(cli, ["users", "create", "bob"]).exit_code == 0
    typed = runner.invoke(cli, ["users", "passwd", "bob"], input="horse battery\nhorse battery\n")
    assert typed.exit_code == 0, typed.output
    assert "horse battery" not in typed.output and "password of user bob is set" in typed.output
    current = (modelyard_home / "admin.password").read_text().strip()
    own = runner.invoke(cli, ["users", "passwd"], input=f"{current}\nstaple horse\nstaple horse\n")
    assert own.exit_code == 0, own.output
    assert "your password is changed" in own.output
    wrong = runner.invoke(cli, ["users", "passwd"], input=f"{current}\nagain new\nagain new\n")
    assert wrong.exit_code != 0  # the current password is no longer the first one
