"""MODELYARD_TECH_INTERVAL sets how often the server's gateway writes its tech.* aggregates."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import InvalidInput
from modelyard.web.services import ServerConfig, _tech_interval_s


def test_the_setting_is_read_when_the_config_leaves_it_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELYARD_TECH_INTERVAL", raising=False)
    assert _tech_interval_s(ServerConfig(home=tmp_path)) == 60.0  # the default: a minute
    monkeypatch.setenv("MODELYARD_TECH_INTERVAL", "5s")
    assert _tech_interval_s(ServerConfig(home=tmp_path)) == 5.0
    monkeypatch.setenv("MODELYARD_TECH_INTERVAL", "250ms")
    assert _tech_interval_s(ServerConfig(home=tmp_path)) == 0.25
    # An explicit config value wins over the environment.
    assert _tech_interval_s(ServerConfig(home=tmp_path, tech_interval_s=2.0)) == 2.0


@pytest.mark.parametrize("bad", ["0s", "soon"])
def test_a_bad_interval_names_the_variable(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_TECH_INTERVAL", bad)
    with pytest.raises(InvalidInput, match="MODELYARD_TECH_INTERVAL"):
        _tech_interval_s(ServerConfig(home=tmp_path))
