from __future__ import annotations

from pathlib import Path

import pytest

from modelyard import settings
from modelyard.errors import InvalidInput


def test_defaults_come_from_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELYARD_MAX_RECORD_BYTES", raising=False)
    assert settings.get("max_record_bytes") == 1024**2
    assert settings.get("raw_horizon") == 30 * 86_400_000
    assert settings.get("database_url") is None


def test_environment_overrides_and_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_MAX_RECORD_BYTES", "512K")
    monkeypatch.setenv("MODELYARD_RAW_HORIZON", "2h")
    assert settings.get("max_record_bytes") == 512 * 1024
    assert settings.get("raw_horizon") == 7_200_000


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_RAW_HORIZON", "forever")
    with pytest.raises(InvalidInput, match="MODELYARD_RAW_HORIZON='forever'"):
        settings.get("raw_horizon")
    with pytest.raises(InvalidInput, match="size"):
        settings.parse_size_bytes("lots", "limit")


def test_home_follows_the_environment(modelyard_home: Path) -> None:
    assert settings.home() == modelyard_home


def test_every_setting_has_an_env_name_and_help() -> None:
    for name, setting in settings.SETTINGS.items():
        assert setting.name == name
        assert setting.env.startswith("MODELYARD_")
        assert setting.help.endswith(".")
