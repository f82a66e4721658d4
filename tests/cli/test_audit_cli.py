"""``modelyard audit`` against a real server on a loopback socket (``MODELYARD_URL`` and the
admin key, as from a laptop): the table, the filters, --json and the refusals."""

from __future__ import annotations

import time
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


def audit_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    return orjson.loads(ok(capsys, "audit", *args, "--json"))


def wait_for_entries(capsys: pytest.CaptureFixture[str], count: int) -> list[dict[str, Any]]:
    """The log once it holds ``count`` entries (they are written just after each answer)."""
    deadline = time.monotonic() + 10
    while True:
        found: list[dict[str, Any]] = audit_json(capsys)["entries"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_audit_lists_filters_and_refuses(
    server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(capsys, "users", "create", "bob")
    ok(capsys, "teams", "create", "risk")
    found = wait_for_entries(capsys, 2)
    assert [(e["actor"], e["action"], e["outcome"]) for e in found] == [
        ("admin", "people.create_team", "ok"),
        ("admin", "people.create_user", "ok"),
    ]
    piped = ok(capsys, "audit").splitlines()  # not a terminal: plain rows, a header first
    assert piped[0].split("\t") == [
        "at",
        "actor",
        "action",
        "object",
        "project",
        "outcome",
        "status",
        "address",
    ]
    assert piped[1].split("\t")[1:3] == ["admin", "people.create_team"]
    assert len(piped) == 3
    only = audit_json(capsys, "--action", "people.create_user", "--since", "1h")["entries"]
    assert [e["action"] for e in only] == ["people.create_user"]
    assert audit_json(capsys, "--user", "bob")["entries"] == []
    assert audit_json(capsys, "--until", "2001-01-01")["entries"] == []
    page = audit_json(capsys, "--limit", "1")
    assert len(page["entries"]) == 1 and page["next_before"] == found[0]["seq"]
    assert "more entries: --before" in " ".join(run_main(capsys, "audit", "--limit", "1")[2:])
    older = audit_json(capsys, "--before", str(page["next_before"]))["entries"]
    assert [e["seq"] for e in older] == [found[1]["seq"]]

    code, _, err = run_main(capsys, "audit", "--since", "last tuesday")
    assert code == 2 and "since='last tuesday'" in err
    code, _, err = run_main(capsys, "audit", "--project", "nowhere")
    assert code == 2 and "'nowhere'" in err
