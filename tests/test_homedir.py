"""The home folder and its database get the same private modes whoever creates them first."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelyard
from _async import run
from modelyard.errors import InvalidInput
from modelyard.homedir import make_home, make_private_file
from modelyard.tracking import backends
from server.conftest import serve


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The common umask 022: what leaves a carelessly created folder 0755 and a file 0644."""
    before = os.umask(0o022)
    backends.close_all()
    try:
        yield
    finally:
        backends.close_all()
        os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _modes(home: Path) -> dict[str, int]:
    names = ["", "modelyard.db", "modelyard.db-wal", "modelyard.db-shm"]
    return {name or "home": _mode(home / name) for name in names}


PRIVATE = {
    "home": 0o700,
    "modelyard.db": 0o600,
    "modelyard.db-wal": 0o600,
    "modelyard.db-shm": 0o600,
}


def test_a_home_created_by_the_sdk_is_private(modelyard_home: Path) -> None:
    assert not modelyard_home.exists()

    @modelyard.model_metrics
    def predict(args: dict[str, int]) -> dict[str, int]:
        modelyard.track_metric("x", args["x"])
        return args

    predict({"x": 1})
    backends.flush_all()
    # While the store is open: SQLite's -wal and -shm files exist only then.
    assert _modes(modelyard_home) == PRIVATE
    # Every other file the SDK leaves in the home is private too.
    others = {p.name: _mode(p) for p in modelyard_home.iterdir() if p.is_file()}
    assert others and set(others.values()) == {0o600}, others


def test_a_home_created_by_the_server_is_private(modelyard_home: Path) -> None:
    async def started() -> tuple[dict[str, int], dict[str, int]]:
        async with serve(modelyard_home):
            files = {p.name: _mode(p) for p in modelyard_home.iterdir() if p.is_file()}
            return _modes(modelyard_home), files

    assert not modelyard_home.exists()
    modes, files = run(started())
    assert modes == PRIVATE
    # admin.key, server.json and the rest: every file the server writes in the home
    assert {"admin.key", "server.json"} <= set(files) and set(files.values()) == {0o600}, files


def test_an_existing_home_keeps_its_modes(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    home.mkdir(mode=0o750)
    os.chmod(home, 0o750)
    assert make_home(home) == home.resolve()
    assert _mode(home) == 0o750
    (home / "f").write_text("x")
    assert make_private_file(home / "f") is False
    assert make_private_file(home / "g") is True
    assert _mode(home / "g") == 0o600


def test_a_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInput, match=r"home=.*exists and is not a folder"):
        make_home(tmp_path / "file")
