from __future__ import annotations

import time

import pytest

import modelyard
from modelyard.errors import InvalidInput, NotFound, PayloadTooLarge

T0 = 1_700_000_000_000  # a time a record may carry (2023-11-14)


@modelyard.model_metrics
def predict(x: int) -> int:
    modelyard.track_metric("x", x)
    return x


def _deployment() -> str:
    return modelyard.current_identity().deployment_crn


def test_an_identifier_is_required_and_the_message_lists_them() -> None:
    with pytest.raises(InvalidInput, match="model_deployment_crn, model_build_crn or model_crn"):
        modelyard.read_metrics()
    with pytest.raises(InvalidInput, match="model_crn"):
        modelyard.read_metrics_frame()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start_timestamp_ms": "0"}, "start_timestamp_ms must be an int"),
        ({"end_timestamp_ms": 1.5}, "end_timestamp_ms must be an int"),
        ({"start_timestamp_ms": True}, "start_timestamp_ms must be an int"),
        ({"start_timestamp_ms": 10, "end_timestamp_ms": 5}, "start <= end"),
        ({"limit": 0}, "limit must be a positive int"),
        ({"page_token": ""}, "page_token must be"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        modelyard.read_metrics("crn:modelyard:deployment/x", **kwargs)  # type: ignore[arg-type]


def test_any_identifier_level_finds_the_records() -> None:
    out = predict(1)
    ident = modelyard.current_identity()
    for kwargs in (
        {"model_deployment_crn": ident.deployment_crn},
        {"model_build_crn": ident.build_crn},
        {"model_crn": ident.model_crn},
    ):
        records = modelyard.read_metrics(**kwargs)["metrics"]  # type: ignore[arg-type]
        assert [r["predictionUuid"] for r in records] == [out["uuid"]]
    with pytest.raises(InvalidInput, match="crn:modelyard:model/unknown"):
        modelyard.read_metrics(model_crn="crn:modelyard:model/unknown")
    after = time.time_ns() // 1_000_000 + 1
    empty = modelyard.read_metrics(ident.deployment_crn, after, after + 1000)
    assert empty == {"metrics": []}


def test_window_bounds_select_by_start_timestamp() -> None:
    predict(1)
    time.sleep(0.005)
    middle = time.time_ns() // 1_000_000
    time.sleep(0.005)
    second = predict(2)
    later = modelyard.read_metrics(_deployment(), start_timestamp_ms=middle)["metrics"]
    assert [r["predictionUuid"] for r in later] == [second["uuid"]]
    earlier = modelyard.read_metrics(_deployment(), end_timestamp_ms=middle)["metrics"]
    assert [r["metrics"]["x"] for r in earlier] == [1]


def test_pages_continue_with_the_token_and_cover_everything_once() -> None:
    made = [predict(i)["uuid"] for i in range(7)]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = modelyard.read_metrics(_deployment(), limit=3, page_token=token)
        seen += [r["predictionUuid"] for r in page["metrics"]]
        pages += 1
        token = page.get("nextPageToken")
        if token is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 7
    assert pages == 3
    assert "nextPageToken" not in modelyard.read_metrics(_deployment())


def test_delayed_metrics_merge_into_the_prediction_record() -> None:
    out = predict(3)  # still in the writer's buffer: track_delayed_metrics flushes first
    modelyard.track_delayed_metrics({"actual": 1, "x": 30}, out["uuid"])
    (record,) = modelyard.read_metrics(_deployment())["metrics"]
    assert record["predictionUuid"] == out["uuid"]
    assert record["metrics"] == {"x": 30, "actual": 1}


def test_delayed_metrics_for_an_unknown_uuid_name_it() -> None:
    missing = "0e6f5d4c-1111-4222-8333-944455556666"
    with pytest.raises(NotFound, match=missing):
        modelyard.track_delayed_metrics({"actual": 1}, missing)
    with pytest.raises(InvalidInput, match="prediction_uuid must be"):
        modelyard.track_delayed_metrics({"actual": 1}, None)  # type: ignore[arg-type]


def test_delayed_metrics_are_checked_like_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    out = predict(1)
    with pytest.raises(InvalidInput, match=r"'actual\.y'"):
        modelyard.track_delayed_metrics({"actual": {"y": float("nan")}}, out["uuid"])
    monkeypatch.setenv("MODELYARD_MAX_RECORD_BYTES", "16")
    with pytest.raises(PayloadTooLarge, match="limit of 16 bytes"):
        modelyard.track_delayed_metrics({"actual": "x" * 20}, out["uuid"])


def test_aggregate_metrics_come_back_with_their_window() -> None:
    predict(1)
    now = time.time_ns() // 1_000_000
    modelyard.track_aggregate_metrics({"accuracy": 0.93}, now - 60_000, now)
    records = modelyard.read_metrics(_deployment())["metrics"]
    (aggregate,) = [r for r in records if r["predictionUuid"] is None]
    assert aggregate["metrics"] == {"accuracy": 0.93}
    assert (aggregate["startTimeStampMs"], aggregate["endTimeStampMs"]) == (now - 60_000, now)


def test_aggregate_for_the_default_identity_works_before_any_prediction() -> None:
    modelyard.track_aggregate_metrics({"drift": {"psi": 0.02}}, T0, T0 + 10)
    (record,) = modelyard.read_metrics(_deployment())["metrics"]
    assert record["metrics"] == {"drift": {"psi": 0.02}}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (({"a": 1}, T0 + 10, T0 + 5), "start <= end"),
        (({"a": 1}, "0", T0 + 5), "start_timestamp_ms must be an int"),
        (({"a": 1}, T0, 5.0), "end_timestamp_ms must be an int"),
        (([1], T0, T0 + 5), "metrics must be a dict"),
        # the REST API's range, so a script that works embedded works against a server too
        (({"a": 1}, 0, T0), r"start_timestamp_ms=0 is outside .* from 2000-01-01"),
        (({"a": 1}, T0, 2**63), r"end_timestamp_ms=9223372036854775808 is outside"),
    ],
)
def test_aggregate_arguments_are_checked(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        modelyard.track_aggregate_metrics(*args)  # type: ignore[arg-type]


def test_an_unknown_deployment_is_invalid_input_for_aggregates_as_for_reads() -> None:
    with pytest.raises(InvalidInput, match="crn:modelyard:deployment/nope") as written:
        modelyard.track_aggregate_metrics({"a": 1}, T0, T0 + 5, "crn:modelyard:deployment/nope")
    assert not isinstance(written.value, NotFound)  # NotFound is for unknown prediction uuids
    with pytest.raises(InvalidInput, match="crn:modelyard:deployment/nope"):
        modelyard.read_metrics("crn:modelyard:deployment/nope")


def test_numpy_integer_timestamps_are_accepted_but_floats_and_bools_are_not() -> None:
    import numpy as np

    from modelyard.tracking.read import check_ms

    assert check_ms(np.int64(1_795_699_054_979), "end_timestamp_ms") == 1_795_699_054_979
    assert type(check_ms(np.int32(5), "start_timestamp_ms")) is int
    for bad in (1.5, 1e12, True, "1000"):
        with pytest.raises(InvalidInput, match="end_timestamp_ms must be an int"):
            check_ms(bad, "end_timestamp_ms")


def test_delayed_values_keep_where_they_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import socket

    from modelyard.tracking import backends

    out = predict(1)
    monkeypatch.setenv("MODELYARD_RUN_ID", "run-7")
    modelyard.track_delayed_metrics({"actual": 0}, out["uuid"])
    (value,) = backends.select().store.delayed_history(out["uuid"])  # type: ignore[attr-defined]
    assert (value.key, value.value) == ("actual", 0)
    assert value.source == f"{socket.gethostname()} pid {os.getpid()} run run-7"
