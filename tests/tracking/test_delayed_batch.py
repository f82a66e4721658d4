"""The batch form of ``track_delayed_metrics``: a list of (uuid, metrics) pairs or a DataFrame,
stored in bulk, unknown uuids reported; embedded, and remote through a real server (uvicorn in a
thread, loopback) in chunks that fit the body limit."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import modelyard
from _live import remote_sdk
from modelyard.errors import InvalidInput, NotFound
from modelyard.store import DelayedBatch, Identity, Prediction, open_store
from modelyard.tracking import backends, remote

WHO = Identity(
    "crn:modelyard:model/44444444-4444-4444-8444-444444444441",
    "crn:modelyard:build/44444444-4444-4444-8444-444444444442",
    "crn:modelyard:deployment/44444444-4444-4444-8444-444444444443",
)
T0 = 1_790_000_000_000


def _fill(n: int, database_url: str | None = None) -> list[str]:
    uuids = [str(uuidlib.uuid4()) for _ in range(n)]
    with open_store(database_url) as store:
        store.write_predictions(
            [Prediction(u, WHO, T0 + i, T0 + i + 5, {"p": i / n}) for i, u in enumerate(uuids)]
        )
    return uuids


def _truth(database_url: str | None = None) -> dict[str, object]:
    records = modelyard.read_metrics(WHO.deployment_crn, end_timestamp_ms=T0 + 10**6)["metrics"]
    return {r["predictionUuid"]: r["metrics"].get("truth") for r in records}


def _check_forms(n: int, database_url: str | None = None) -> None:
    uuids = _fill(n, database_url)
    ghost = str(uuidlib.uuid4())
    pairs = [(u, {"truth": i % 2}) for i, u in enumerate(uuids[: n // 2])] + [(ghost, {"truth": 1})]
    result = modelyard.track_delayed_metrics(pairs)
    assert result == DelayedBatch(stored=n // 2, unknown=(ghost,))
    frame = pd.DataFrame(
        {
            "prediction_uuid": uuids[n // 2 :],
            "truth": [1.0] * (n - n // 2),
            "note": ["late"] + [None] * (n - n // 2 - 1),  # a null cell: that key left out
        }
    )
    assert modelyard.track_delayed_metrics(frame).stored == n - n // 2
    truth = _truth(database_url)
    assert [truth[u] for u in uuids[:4]] == [0, 1, 0, 1]
    assert truth[uuids[-1]] == 1.0
    # the reference single-record form is unchanged: None, and NotFound for an unknown uuid
    assert modelyard.track_delayed_metrics({"truth": 0}, uuids[0]) is None
    with pytest.raises(NotFound, match=ghost):
        modelyard.track_delayed_metrics({"truth": 1}, ghost)


def test_embedded_batch_forms() -> None:
    _check_forms(50)
    assert backends.select().name != "remote"


def test_bad_batches_are_refused_naming_the_row() -> None:
    uuids = _fill(3)
    with pytest.raises(InvalidInput, match=r"item 1 .*nan"):
        modelyard.track_delayed_metrics([(uuids[0], {"t": 1}), (uuids[1], {"t": float("nan")})])
    with pytest.raises(InvalidInput, match="no column 'prediction_uuid'"):
        modelyard.track_delayed_metrics(pd.DataFrame({"uuid": uuids, "t": [1, 2, 3]}))
    with pytest.raises(InvalidInput, match="item 0 must be a"):
        modelyard.track_delayed_metrics([uuids[0]])
    with pytest.raises(InvalidInput, match="without a prediction_uuid"):
        modelyard.track_delayed_metrics("truth")
    frame = pd.DataFrame({"id": uuids, "t": [1, 2, 3]})
    assert modelyard.track_delayed_metrics(frame, uuid_column="id").stored == 3


@pytest.fixture
def remote_home(modelyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MODELYARD_MAX_BATCH_BYTES", "50KB")  # the server's cap on the route
    with remote_sdk(modelyard_home, monkeypatch):
        yield f"sqlite:///{modelyard_home / 'modelyard.db'}"


@pytest.mark.slow
def test_remote_batch_in_chunks_and_split_on_413(
    remote_home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "DELAYED_CHUNK_ITEMS", 1000)  # several requests
    monkeypatch.setattr(remote, "DELAYED_CHUNK_BYTES", 10**8)  # 1000 items: the cap answers 413
    sizes: list[int] = []
    send = remote.RemoteBackend._send_delayed

    def counted(self: remote.RemoteBackend, parts: list[bytes], *args: object) -> DelayedBatch:
        sizes.append(len(parts))
        return send(self, parts, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(remote.RemoteBackend, "_send_delayed", counted)
    _check_forms(3000, remote_home)
    assert backends.select().name == "remote"
    assert sizes[:3] == [1000, 500, 500]  # refused with 413, then sent in halves
