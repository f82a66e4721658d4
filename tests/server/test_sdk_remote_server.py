"""The SDK's remote backend against the real server app on a real uvicorn (loopback, in a thread):
the four tracking calls, reads as records, pages, frames and iterators, errors translated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import modelyard
from _live import remote_sdk
from modelyard.errors import InvalidInput, NotFound, Unauthorized
from modelyard.registry import Registry
from modelyard.specs import JobSpec
from modelyard.store import open_store
from modelyard.tracking import backends

DEPLOYMENT = "crn:modelyard:deployment/22222222-2222-4222-8222-222222222222"
BUILD = "crn:modelyard:build/22222222-2222-4222-8222-222222222223"
MODEL = "crn:modelyard:model/22222222-2222-4222-8222-222222222224"


@pytest.fixture
def sdk(modelyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    with remote_sdk(modelyard_home, monkeypatch, jobs=True) as url:
        monkeypatch.setenv("MODELYARD_DEPLOYMENT_CRN", DEPLOYMENT)
        monkeypatch.setenv("MODELYARD_BUILD_CRN", BUILD)
        monkeypatch.setenv("MODELYARD_MODEL_CRN", MODEL)
        monkeypatch.delenv("MODELYARD_RUN_ID", raising=False)
        backends.close_all()
        yield url, modelyard_home


def test_track_read_delayed_aggregate_and_frames(sdk: tuple[str, Path]) -> None:
    @modelyard.model_metrics
    def predict(x: int) -> int:
        modelyard.track_metric("x", x)
        return 2 * x

    uuids = [predict(i)["uuid"] for i in range(25)]
    modelyard.flush()
    assert backends.select().name == "remote"

    modelyard.track_delayed_metrics({"label": 1}, uuids[3])
    with pytest.raises(NotFound, match="HTTP 404") as missing:
        modelyard.track_delayed_metrics({"label": 1}, "no-such-uuid")
    assert "no-such-uuid" in str(missing.value) and '{"error"' not in str(missing.value)
    window = (1_767_225_600_000, 1_767_225_600_010)  # the server takes 2000-01-01 .. 2200-01-01
    modelyard.track_aggregate_metrics({"accuracy": 0.75}, *window, model_deployment_crn=DEPLOYMENT)

    page = modelyard.read_metrics(model_deployment_crn=DEPLOYMENT, limit=10)
    assert len(page["metrics"]) == 10
    assert page["nextPageToken"]
    everything = modelyard.read_metrics(model_deployment_crn=DEPLOYMENT)["metrics"]
    by_uuid = {r["predictionUuid"]: r for r in everything}
    assert set(uuids) <= set(by_uuid)
    assert by_uuid[uuids[3]]["metrics"] == {"x": 3, "label": 1}
    assert by_uuid[uuids[3]]["modelBuildCrn"] == BUILD

    frame = modelyard.read_metrics_frame(model_deployment_crn=DEPLOYMENT)
    predictions = frame[frame["kind"] == "prediction"] if "kind" in frame else frame
    assert len(predictions) == 25
    chunks = list(modelyard.iter_metrics(model_crn=MODEL, batch_size=7))
    assert sum(len(c) for c in chunks) == len(frame) == 26  # 25 predictions + 1 aggregate
    assert len(chunks) == 4


def test_run_metrics_are_recorded_with_the_run(
    sdk: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, home = sdk
    store = open_store(f"sqlite:///{home / 'modelyard.db'}")
    try:
        registry = Registry(store)
        (tmp_path / "job.py").write_text("")
        job = registry.create_job(
            JobSpec(name="nightly", project=str(tmp_path), script="job.py", manual=True)
        )
        run = registry.create_run(job.id, 0, 1, "manual")
        monkeypatch.setenv("MODELYARD_RUN_ID", run.id.rsplit("/", 1)[-1])
        modelyard.track_metrics({"rows": 1000})
        assert [(m.key, m.value) for m in registry.run_metrics(run.id)] == [("rows", 1000)]
        monkeypatch.setenv("MODELYARD_RUN_ID", "nightly-1")  # not a run's uuid
        with pytest.raises(InvalidInput, match="nightly-1"):
            modelyard.track_metrics({"rows": 1})
    finally:
        store.close()


def test_a_wrong_key_is_refused_by_name(
    sdk: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_API_KEY", "myk_" + "z" * 43)
    backends.close_all()
    with pytest.raises(Unauthorized, match="HTTP 401"):
        modelyard.read_metrics(model_deployment_crn=DEPLOYMENT)
