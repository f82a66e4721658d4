"""``modelyard secrets set / list / delete`` against a real server on a loopback socket: the value
comes from stdin (never an argument, which is refused without being echoed), never comes back in
any output, and ``--project`` picks the project (default: the server's default project)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from _cli import run_main
from _live import live_cli
from modelyard.cli.secrets_cmd import read_value
from modelyard.errors import InvalidInput

VALUE = "cli-s3cret-\u00e9-99d1"


@pytest.fixture
def server(modelyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with live_cli(modelyard_home, monkeypatch) as url:
        yield url


def test_set_list_delete(
    server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs: list[str] = []

    def run(*args: str, stdin: str = "", code: int = 0) -> str:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        got, out, err = run_main(capsys, *args)
        outputs.extend([out, err])
        assert got == code, (args, out, err)
        return out if code == 0 else " ".join(err.split())

    said = run("secrets", "set", "DB_PASSWORD", stdin=VALUE + "\n")
    assert said.strip() == "set secret DB_PASSWORD in project admin/default"
    shown = orjson.loads(run("secrets", "set", "API_TOKEN", "--json", stdin="t0k"))
    assert shown["name"] == "API_TOKEN" and shown["set_by"] == "admin"
    rows = run("secrets", "list").splitlines()
    assert rows[0].split("\t")[:2] == ["name", "set_by"]
    assert [r.split("\t")[0] for r in rows[1:]] == ["API_TOKEN", "DB_PASSWORD"]
    listed = orjson.loads(run("secrets", "list", "--project", "admin/default", "--json"))
    assert [s["name"] for s in listed["secrets"]] == ["API_TOKEN", "DB_PASSWORD"]

    refused = run("secrets", "set", "X", VALUE, stdin=VALUE, code=2)
    assert "never a command-line argument" in refused
    assert "'bad' is not accepted" in run("secrets", "set", "bad", stdin=VALUE, code=2)
    assert "no value" in run("secrets", "set", "EMPTY", stdin="\n", code=2)
    assert "no project 'nowhere'" in run("secrets", "list", "--project", "nowhere", code=2)

    assert run("secrets", "delete", "API_TOKEN").strip() == (
        "deleted secret API_TOKEN from project admin/default"
    )
    assert "'API_TOKEN' not set" in run("secrets", "delete", "API_TOKEN", code=2)
    assert [i for i, text in enumerate(outputs) if VALUE in text] == []


def test_only_one_trailing_newline_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("two lines\nof value\n\n"))
    assert read_value("A") == "two lines\nof value\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("crlf\r\n"))
    assert read_value("A") == "crlf"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(InvalidInput, match="stdin gave no value for secret 'A'"):
        read_value("A")


def test_deploy_and_jobs_name_secrets(
    server: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "predict.py").write_text("def predict(args):\n    return 1\n")
    (folder / "hello.py").write_text("print('hi')\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, out, err = run_main(
        capsys, "models", "deploy", "vault", "--project-dir", str(folder), "--secret", "NOPE"
    )
    assert code == 2 and "'NOPE' not set in project 'admin/default'" in err, (out, err)
    code, out, err = run_main(
        capsys, "jobs", "create", "nightly", "--project-dir", str(folder), "--script",
        "hello.py", "--manual", "--secret", "DB_PASSWORD", "--secret", "API_TOKEN", "--json",
    )  # fmt: skip
    assert code == 0, (out, err)
    assert orjson.loads(out)["job"]["secrets"] == ["DB_PASSWORD", "API_TOKEN"]
    code, out, err = run_main(capsys, "jobs", "update", "nightly", "--secret", "X", "--json")
    assert code == 0 and orjson.loads(out)["job"]["secrets"] == ["X"], (out, err)


def test_rotate_key_re_encrypts_with_the_first_key(
    modelyard_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.fernet import Fernet

    from modelyard.registry import Registry, SecretBox, SecretKeyError
    from modelyard.store import open_store

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    modelyard_home.mkdir()
    with open_store() as store:
        registry = Registry(store)
        registry.secrets.configure(SecretBox(keys=old))
        registry.people.create_user("alice")
        crn = registry.people.create_project("churn", owner="alice").crn
        registry.secrets.set(crn, "DB_PASSWORD", VALUE, "alice")
    assert "MODELYARD_SECRETS_KEY is not set" in run_main(capsys, "secrets", "rotate-key")[2]
    monkeypatch.setenv("MODELYARD_SECRETS_KEY", f"{new},{old}")
    code, out, err = run_main(capsys, "secrets", "rotate-key")
    assert code == 0 and out.strip().startswith("re-encrypted 1 secret(s)"), (out, err)
    with open_store() as store:
        registry = Registry(store)
        registry.secrets.configure(SecretBox(keys=new))
        assert registry.secrets.values(crn, ["DB_PASSWORD"]) == {"DB_PASSWORD": VALUE}
        registry.secrets.configure(SecretBox(keys=old))
        with pytest.raises(SecretKeyError):
            registry.secrets.values(crn, ["DB_PASSWORD"])
