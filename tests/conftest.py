"""Shared fixtures: an isolated Modelyard home for every test, and PostgreSQL when reachable.

PostgreSQL is read from MODELYARD_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).
With CI set, an unreachable PostgreSQL fails the tests that need it; elsewhere they skip saying why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

_ISOLATED_ENV = (
    "MODELYARD_HOME",
    "MODELYARD_DATABASE_URL",
    "MODELYARD_URL",
    "MODELYARD_API_KEY",
    "MODELYARD_DEPLOYMENT_CRN",
    "MODELYARD_BUILD_CRN",
    "MODELYARD_MODEL_CRN",
    "MODELYARD_SECRETS_KEY",
)


@pytest.fixture(autouse=True)
def modelyard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty home and CLI config; nothing reaches ~/.modelyard,
    ~/.config/modelyard or a real server."""
    for name in _ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "modelyard-home"
    monkeypatch.setenv("MODELYARD_HOME", str(home))
    # The CLI's own config (its default project) too: never the user's ~/.config/modelyard.
    monkeypatch.setenv("MODELYARD_CONFIG", str(tmp_path / "cli-config.json"))
    # Hundreds of servers start in the suite, each hashing its new admin's password: the cheap
    # argon2id profile (tests/registry/test_people.py checks the real one, the default).
    monkeypatch.setenv("MODELYARD_PASSWORD_HASH", "fast")
    return home


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist hands test files out by their number of tests, most first: the slow files of
    one or two tests (a browser on the demo's data, the API fuzzer: up to a minute each) came
    last and ran on alone at the end of ``make test``'s parallel pass. Hand them out in
    collection order instead, which puts them first (``pytest_collection_modifyitems``), so the
    short files fill the end."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the files with a test marked slow first, each file's tests kept
    together and in order (a serial run keeps the files' order)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Ray tests share one session-scoped cluster and need the machine: never under pytest-xdist
    (``make test`` runs them in a second, serial pass: ``pytest -m ray``)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and item.get_closest_marker("ray"):
        pytest.fail(
            f"{item.nodeid} is marked ray but runs in pytest-xdist worker {worker}; "
            "run the Ray tests serially: pytest -m ray (and the rest with -m 'not ray')",
            pytrace=False,
        )


def _postgres_url() -> str:
    return os.environ.get("MODELYARD_TEST_POSTGRES_URL", DEFAULT_PG_URL)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = _postgres_url()
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        message = f"PostgreSQL at {url} is not reachable ({exc.__class__.__name__}: {exc})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI requires it (set MODELYARD_TEST_POSTGRES_URL)")
        pytest.skip(f"{message}; set MODELYARD_TEST_POSTGRES_URL to run PostgreSQL tests")
    return url


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose connections see a fresh, empty schema; dropped after the test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
