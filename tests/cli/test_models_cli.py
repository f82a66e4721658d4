"""``modelyard models`` and ``modelyard keys`` against a real ``modelyard server`` process on
this machine: the CLI finds it through ``server.json`` and ``admin.key``, or through
``MODELYARD_URL`` and ``MODELYARD_API_KEY``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from _cli import run_main as cli
from server.conftest import PREDICT, ServerProcess, server_process  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "churn-project"
    root.mkdir()
    import textwrap

    (root / "predict.py").write_text(textwrap.dedent(PREDICT))
    return root


def ok_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = cli(capsys, *args)
    assert code == 0, (args, out, err)
    return orjson.loads(out)


def test_models_and_keys_commands_against_a_real_server(
    server_process: Callable[[], ServerProcess],  # noqa: F811
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = server_process()
    deployed = ok_json(
        capsys, "models", "deploy", "churn", "--project-dir", str(project),
        "--example", '{"x": 1}', "--env", "GREETING=hi", "--json",
    )  # fmt: skip
    assert deployed["ok"] is True and deployed["access_key"].startswith("mya_")
    build1 = deployed["build"]["crn"]

    code, out, _ = cli(capsys, "models", "deploy", "plain", "--project-dir", str(project),
                       "--no-auth", "--concurrency", "2", "--timeout", "5")  # fmt: skip
    assert code == 0
    assert "crn:modelyard:deployment/" in out and "mya_" in out  # ids and the key, as a table

    listed = ok_json(capsys, "models", "list", "--json")
    assert {m["name"] for m in listed} == {"churn", "plain"}
    shown = ok_json(capsys, "models", "show", "plain", "--json")
    assert shown["model"]["settings"]["auth_required"] is False
    assert shown["model"]["settings"]["concurrency"] == 2
    assert ok_json(capsys, "models", "builds", "churn", "--json")[0]["crn"] == build1

    answer = ok_json(capsys, "models", "predict", "churn", '{"x": 4}', "--json")
    assert answer["success"] is True and answer["response"]["prediction"] == {"double": 8}
    code, out, _ = cli(capsys, "models", "predict", "churn", '{"x": -4}', "--json")
    assert code != 0 and "negative" in orjson.loads(out)["error"]["message"]
    code, out, _ = cli(capsys, "models", "predict", "churn", '{"x": 21}')  # a table by default
    assert code == 0 and "ReplicaID" in out and '"double":42' in out

    code, out, _ = cli(capsys, "models", "logs", "churn", "--tail", "50")
    assert code == 0 and "serving predict.py:predict" in out

    assert ok_json(capsys, "models", "scale", "churn", "2", "--json")["replicas"] == 2
    assert ok_json(capsys, "models", "stop", "churn", "--json")["state"] == "stopped"
    code, out, err = cli(capsys, "models", "predict", "churn", '{"x": 1}', "--json")
    assert code == 1 and "no active deployment" in out
    assert ok_json(capsys, "models", "start", "churn", "--json")["ok"] is True

    (project / "predict.py").write_text(
        (project / "predict.py").read_text().replace("* 2}", "* 3}")
    )
    second = ok_json(capsys, "models", "deploy", "churn", "--project-dir", str(project), "--json")
    assert second["access_key"] is None and second["build"]["crn"] != build1
    back = ok_json(capsys, "models", "rollback", "churn", "--json")
    assert back["build"]["crn"] == build1
    again = ok_json(capsys, "models", "predict", "churn", '{"x": 2}', "--json")
    assert again["response"]["prediction"] == {"double": 4}

    # a failed build: non-zero exit, the log tail printed, the running deployment untouched
    (project / "predict.py").write_text("raise RuntimeError('cannot import this')\n")
    code, out, err = cli(capsys, "models", "deploy", "churn", "--project-dir", str(project))
    assert code == 2
    assert "cannot import this" in err and "Deploy failed" in err  # piped: the title on stderr
    assert "crn:modelyard:build/" in out
    assert ok_json(capsys, "models", "predict", "churn", '{"x": 2}', "--json")["success"] is True

    rotated = ok_json(capsys, "models", "rotate-key", "churn", "--json")
    assert rotated["access_key"].startswith("mya_")

    # keys: create a user key narrowed to operator, use it through MODELYARD_URL +
    # MODELYARD_API_KEY, revoke it
    created = ok_json(capsys, "keys", "create", "--name", "alice", "--role", "user",
                      "--project-role", "operator", "--json")  # fmt: skip
    token, key_id = created["token"], created["key"]["id"]
    assert key_id in {k["id"] for k in ok_json(capsys, "keys", "list", "--json")}
    monkeypatch.setenv("MODELYARD_URL", server.url)
    monkeypatch.setenv("MODELYARD_API_KEY", token)
    assert len(ok_json(capsys, "models", "list", "--json")) == 2
    code, _, err = cli(capsys, "models", "delete", "plain")  # an operator may not
    assert code == 2 and "operator" in err and "needs contributor or higher" in err
    monkeypatch.delenv("MODELYARD_URL")
    monkeypatch.delenv("MODELYARD_API_KEY")
    revoked = ok_json(capsys, "keys", "revoke", key_id, "--json")
    assert revoked["key"]["id"] == key_id and revoked["key"]["revoked_ms"] is not None
    code, out, _ = cli(capsys, "keys", "revoke", key_id)  # idempotent; a line for people
    assert code == 0 and key_id in out
    monkeypatch.setenv("MODELYARD_URL", server.url)
    monkeypatch.setenv("MODELYARD_API_KEY", token)
    code, _, err = cli(capsys, "models", "list")
    assert code == 2 and "revoked" in err
    monkeypatch.delenv("MODELYARD_URL")
    monkeypatch.delenv("MODELYARD_API_KEY")

    assert ok_json(capsys, "models", "delete", "plain", "--json") == {
        "model": "plain",
        "deleted": True,
    }
    code, _, err = cli(capsys, "models", "show", "plain")
    assert code == 2 and "plain" in err and len(err.strip().splitlines()) == 1


def test_without_a_server_the_cli_says_how_to_find_one(
    capsys: pytest.CaptureFixture[str], modelyard_home: Path
) -> None:
    code, _, err = cli(capsys, "models", "list")
    assert code == 2
    assert "modelyard server" in err and "MODELYARD_URL" in err
