"""How the backend and the identity are chosen, with real stores and real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import modelyard
from modelyard.store.base import Identity
from modelyard.tracking import DEV_IDENTITY, backends
from modelyard.tracking.identity import LOCAL_IDENTITY_FILE, local_identity


def _no_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELYARD_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # ~/.modelyard does not exist there


def test_no_home_means_dev(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_home(monkeypatch, tmp_path)
    backend = backends.select()
    assert backend.name == "dev"
    assert backend.identity == DEV_IDENTITY
    assert backend is backends.select(dev=True)


def test_existing_default_home_means_embedded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_home(monkeypatch, tmp_path)
    (tmp_path / "user" / ".modelyard").mkdir(parents=True)
    backend = backends.select()
    assert backend.name == "embedded"
    assert (tmp_path / "user" / ".modelyard" / LOCAL_IDENTITY_FILE).exists() is False
    ident = backend.identity  # the local identity is made on first use, in that home
    assert (tmp_path / "user" / ".modelyard" / LOCAL_IDENTITY_FILE).exists()
    assert ident.deployment_crn.startswith("crn:modelyard:deployment/")


def test_configured_home_is_embedded_sqlite(modelyard_home: Path) -> None:
    backend = backends.select()
    assert backend.name == "embedded"
    assert backend.store.backend == "sqlite"  # type: ignore[attr-defined]
    assert (modelyard_home / "modelyard.db").exists()


def test_replica_identity_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    ident = Identity(
        "crn:modelyard:model/m1", "crn:modelyard:build/b1", "crn:modelyard:deployment/d1"
    )
    monkeypatch.setenv("MODELYARD_MODEL_CRN", ident.model_crn)
    monkeypatch.setenv("MODELYARD_BUILD_CRN", ident.build_crn)
    monkeypatch.setenv("MODELYARD_DEPLOYMENT_CRN", ident.deployment_crn)
    assert modelyard.current_identity() == ident

    @modelyard.model_metrics
    def predict() -> int:
        return 1

    predict()
    (record,) = modelyard.read_metrics(model_build_crn="crn:modelyard:build/b1")["metrics"]
    assert record["modelCrn"] == "crn:modelyard:model/m1"


def test_deployment_alone_derives_a_stable_model_and_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELYARD_DEPLOYMENT_CRN", "crn:modelyard:deployment/d2")
    first = modelyard.current_identity()
    backends.close_all()
    assert modelyard.current_identity() == first
    assert first.model_crn.startswith("crn:modelyard:model/")
    monkeypatch.setenv("MODELYARD_DEPLOYMENT_CRN", "not-a-crn")
    with pytest.raises(modelyard.errors.InvalidInput, match="MODELYARD_DEPLOYMENT_CRN"):
        modelyard.current_identity()


def test_local_identity_is_kept_in_the_home(modelyard_home: Path) -> None:
    first = local_identity()
    assert local_identity() == first
    (modelyard_home / LOCAL_IDENTITY_FILE).write_text("{not json")
    with pytest.raises(modelyard.errors.InvalidInput, match="delete it"):
        local_identity()


def _run(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_records_buffered_at_exit_are_flushed(modelyard_home: Path) -> None:
    """A script that tracks and exits without flushing still leaves its records behind."""
    script = """
        import modelyard

        @modelyard.model_metrics
        def predict(x):
            modelyard.track_metric("x", x)
            return x

        for i in range(500):
            predict(i)
        print(modelyard.current_identity().deployment_crn)
    """
    done = _run(script, modelyard_home)
    assert done.returncode == 0, done.stderr
    deployment = done.stdout.strip()
    assert deployment == local_identity(modelyard_home).deployment_crn
    df = modelyard.read_metrics_frame(deployment)
    assert sorted(df["x"].tolist()) == list(range(500))
    again = _run(script, modelyard_home)  # a second run shares the home's local identity
    assert again.stdout.strip() == deployment
    assert len(modelyard.read_metrics_frame(deployment)) == 1000


@pytest.mark.postgres
def test_database_url_selects_postgres(
    postgres_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_DATABASE_URL", postgres_schema_url)
    backend = backends.select()
    assert backend.store.backend == "postgres"  # type: ignore[attr-defined]

    @modelyard.model_metrics
    def predict(x: int) -> int:
        modelyard.track_metric("x", x)
        return x

    out = predict(7)
    modelyard.track_delayed_metrics({"actual": 0}, out["uuid"])
    (record,) = modelyard.read_metrics(modelyard.current_identity().deployment_crn)["metrics"]
    assert record["metrics"] == {"x": 7, "actual": 0}


def test_identities_sharing_a_database_share_one_store_and_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = backends.select()
    monkeypatch.setenv("MODELYARD_DEPLOYMENT_CRN", "crn:modelyard:deployment/other")
    replica = backends.select()
    assert replica is not local
    assert replica.identity.deployment_crn == "crn:modelyard:deployment/other"
    assert replica.store is local.store and replica.writer is local.writer  # type: ignore[attr-defined]
