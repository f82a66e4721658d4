"""``modelyard connections create / list / show / update / test / delete`` against a real server
on a loopback socket, with a folder and a SQLite file as the sources; a credential given as an
option is refused and never echoed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import orjson
import pandas as pd
import pytest

from _cli import run_main
from _live import live_cli
from modelyard.cli.connections_cmd import parse_pairs
from modelyard.errors import InvalidInput

VALUE = "cli-conn-s3cret-77"


@pytest.fixture
def server(modelyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with live_cli(modelyard_home, monkeypatch) as url:
        yield url


@pytest.mark.slow
def test_create_list_show_update_test_delete(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> str:
        got, out, err = run_main(capsys, *args)
        outputs.extend([out, err])
        assert got == code, (args, out, err)
        return out if code == 0 else " ".join((out + err).split())

    drop = tmp_path / "drop"
    drop.mkdir()
    pd.DataFrame({"u": ["a"], "y": [1]}).to_parquet(drop / "labels.parquet")
    said = run("connections", "create", "drop", "--kind", "files", "--option", f"path={drop}")
    assert said.startswith("created connection drop (files) in project admin/default")
    db = tmp_path / "labels.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE t (u TEXT)")
    made = orjson.loads(
        run("connections", "create", "lite", "--kind", "sqlite", "--option", f"path={db}", "--json")
    )
    assert made["options"] == {"path": str(db)} and made["kind"] == "sqlite"

    rows = run("connections", "list").splitlines()
    assert rows[0].split("\t")[:3] == ["name", "kind", "where"]
    assert [r.split("\t")[:3] for r in rows[1:]] == [
        ["drop", "files", str(drop)],
        ["lite", "sqlite", str(db)],
    ]
    listed = orjson.loads(run("connections", "list", "--json"))
    assert [c["name"] for c in listed["connections"]] == ["drop", "lite"]
    assert orjson.loads(run("connections", "show", "drop", "--json"))["options"]["path"] == str(
        drop
    )
    assert f"option path\t{drop}" in run("connections", "show", "drop")

    assert run("connections", "test", "drop").strip() == (
        f"ok: folder {drop}: 1 Parquet, 0 CSV and 0 other files"
    )
    tested = orjson.loads(run("connections", "test", "lite", "--json"))
    assert tested["ok"] is True and "1 tables and views" in tested["detail"]

    run("connections", "update", "lite", "--option", f"path={tmp_path / 'gone.db'}")
    failed = run("connections", "test", "lite", code=1)
    assert "failed: connection 'lite' (sqlite at" in failed and "database file not found" in failed

    refused = run(
        "connections",
        "create",
        "pg",
        "--kind",
        "postgresql",
        "--option",
        "host=db",
        "--option",
        "database=crm",
        "--option",
        f"password={VALUE}",
        code=2,
    )
    assert "option 'password' of connection 'pg' is a credential" in refused
    assert "'oracle' is not one of" in run("connections", "create", "x", "--kind", "oracle", code=2)
    assert run("connections", "delete", "lite").strip() == (
        "deleted connection lite from project admin/default"
    )
    assert "connection 'lite' does not exist" in run("connections", "show", "lite", code=2)
    assert [i for i, text in enumerate(outputs) if VALUE in text] == []


def test_pairs_are_key_value() -> None:
    assert parse_pairs("--secret", ("password=DB_PW",)) == {"password": "DB_PW"}
    assert parse_pairs("--option", ("query=a=b",)) == {"query": "a=b"}
    with pytest.raises(InvalidInput, match="--option 'host' is not accepted; expected key=value"):
        parse_pairs("--option", ("host",))
