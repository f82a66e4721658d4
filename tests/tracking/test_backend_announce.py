"""The first use of a backend says on stderr where records go and which rule chose it, once."""

from __future__ import annotations

from pathlib import Path

import pytest

import modelyard
from modelyard.tracking import backends


def _predict() -> None:
    @modelyard.model_metrics
    def predict(args: dict[str, int]) -> dict[str, int]:
        return args

    predict({"x": 1})
    predict({"x": 2})


def _no_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("MODELYARD_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return tmp_path / "user" / ".modelyard"


def test_dev_mode_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default = _no_home(monkeypatch, tmp_path)
    _predict()
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "dev mode, metrics are kept in memory for this process only" in err
    assert f"the default home {default} does not exist" in err
    assert "MODELYARD_HOME" in err


def test_an_existing_default_home_is_named_as_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default = _no_home(monkeypatch, tmp_path)
    default.mkdir(parents=True)
    _predict()
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert f"using the store at {default}/modelyard.db" in err
    assert f"because the default home {default} exists" in err
    assert "in memory only" in err


def test_a_configured_home_is_named_as_the_reason(
    modelyard_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _predict()
    _predict()
    err = capsys.readouterr().err
    assert err.strip() == (
        f"modelyard: using the store at {modelyard_home.resolve()}/modelyard.db, "
        "because MODELYARD_HOME is set"
    )


def test_a_server_is_named_with_its_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELYARD_URL", "http://127.0.0.1:9")
    backends.select()
    backends.select()
    err = capsys.readouterr().err
    assert err.strip() == (
        "modelyard: using the server at http://127.0.0.1:9, because MODELYARD_URL is set"
    )
