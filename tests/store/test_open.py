"""open_store: explicit URL > MODELYARD_DATABASE_URL > SQLite under MODELYARD_HOME."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput
from modelyard.store import open_store
from modelyard.store.postgres import PostgresStore
from modelyard.store.schema import SCHEMA_VERSION
from modelyard.store.sqlite import SQLiteStore


def test_default_is_sqlite_in_the_home_folder(modelyard_home: Path) -> None:
    assert not modelyard_home.exists()
    with open_store() as store:
        assert isinstance(store, SQLiteStore)
        assert store.path == str(modelyard_home / "modelyard.db")
    assert (modelyard_home / "modelyard.db").is_file()


def test_environment_url_then_explicit_url_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_db = tmp_path / "env.db"
    monkeypatch.setenv("MODELYARD_DATABASE_URL", f"sqlite:///{env_db}")
    with open_store() as store:
        assert isinstance(store, SQLiteStore) and store.path == str(env_db)
    explicit = tmp_path / "explicit.db"
    with open_store(f"sqlite:///{explicit}") as store:
        assert isinstance(store, SQLiteStore) and store.path == str(explicit)
    with open_store("sqlite://:memory:") as store:
        assert isinstance(store, SQLiteStore) and store.path == ":memory:"


def test_relative_sqlite_paths_follow_sqlalchemy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///rel/store.db") as store:
        assert isinstance(store, SQLiteStore)
    assert (tmp_path / "rel" / "store.db").is_file()


@pytest.mark.parametrize(
    "url", ["mysql://localhost/db", "sqlite:", "sqlite://", "/plain/path.db", "", "http://x"]
)
def test_unknown_urls_list_what_is_accepted(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        open_store(url)
    message = str(info.value)
    assert "sqlite:///" in message and "postgresql://" in message and ":memory:" in message


@pytest.mark.postgres
def test_postgres_urls_open_postgres(postgres_schema_url: str) -> None:
    with open_store(postgres_schema_url) as store:
        assert isinstance(store, PostgresStore)
        assert store.info().schema_version == SCHEMA_VERSION


def test_importing_the_store_does_not_import_psycopg() -> None:
    code = "import modelyard.store, sys; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
