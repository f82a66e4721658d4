"""``MODELYARD_ADMIN_KEY_FILE``: an admin key minted elsewhere (the Kubernetes export's Secret) is
registered at start, once, on SQLite and PostgreSQL; a bad file is refused naming it."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput
from modelyard.registry import Registry, Role
from modelyard.web.home import ADMIN_KEY_FILE, ensure_admin_key


def _key_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "admin-key"
    path.write_text(token + "\n")
    return path


def test_given_admin_key_is_registered_once(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "myk_" + secrets.token_urlsafe(32)
    monkeypatch.setenv("MODELYARD_ADMIN_KEY_FILE", str(_key_file(tmp_path, token)))
    home = tmp_path / "home"
    home.mkdir()
    first = ensure_admin_key(home, registry)
    again = ensure_admin_key(home, registry)  # a restart, or a second server on the database
    assert first.admin_token is None and again.admin_token is None
    assert not (home / ADMIN_KEY_FILE).exists()  # the Secret stays the one copy
    key = registry.authenticate(token)
    assert key.role is Role.ADMIN and key.expires_ms is None
    assert key.user_id == registry.people.admin_user().id
    assert [k.id for k in registry.list_api_keys() if k.prefix == key.prefix] == [key.id]


@pytest.mark.parametrize(
    ("token", "says"),
    [("myk_admin", "not a key token"), ("letmein-" + "x" * 50, "not a key token")],
)
def test_weak_given_key_is_refused(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str, says: str
) -> None:
    monkeypatch.setenv("MODELYARD_ADMIN_KEY_FILE", str(_key_file(tmp_path, token)))
    with pytest.raises(InvalidInput, match=says) as info:
        ensure_admin_key(tmp_path, registry)
    assert "token_urlsafe" in info.value.message
    assert not any(k.role is Role.ADMIN for k in registry.list_api_keys())


def test_revoked_or_missing_given_key_is_refused(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("MODELYARD_ADMIN_KEY_FILE", str(missing))
    with pytest.raises(InvalidInput, match="cannot be read"):
        ensure_admin_key(tmp_path, registry)
    token = "myk_" + secrets.token_urlsafe(32)
    monkeypatch.setenv("MODELYARD_ADMIN_KEY_FILE", str(_key_file(tmp_path, token)))
    ensure_admin_key(tmp_path, registry)
    registry.revoke_api_key(registry.authenticate(token).id)
    with pytest.raises(InvalidInput, match="is revoked in this database"):
        ensure_admin_key(tmp_path, registry)
