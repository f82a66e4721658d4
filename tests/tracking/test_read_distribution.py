"""``modelyard.read_distribution``: quantiles and a histogram of one metric, checked against numpy
on raw records and against the sketch's stated bound after rollup; on the embedded, dev and
remote backends (a real server in a thread), and through ``modelyard metrics distribution``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from click.testing import CliRunner

import modelyard
from _live import remote_sdk
from modelyard.cli import cli
from modelyard.errors import InvalidInput
from modelyard.store import Identity, Prediction, RollupPolicy, open_store
from modelyard.tracking import DEV_IDENTITY, backends

WHO = Identity(
    "crn:modelyard:model/44444444-4444-4444-8444-444444444441",
    "crn:modelyard:build/44444444-4444-4444-8444-444444444442",
    "crn:modelyard:deployment/44444444-4444-4444-8444-444444444443",
)
DAY = 86_400_000
NOW = 1_790_000_000_000
QS = (0.1, 0.5, 0.9)
N = 2_000


def _values() -> np.ndarray[Any, Any]:
    return np.random.default_rng(7).lognormal(0.0, 1.0, N)


def _fill(database_url: str | None = None, roll: bool = False) -> np.ndarray[Any, Any]:
    """N predictions with a numeric "s" (plus a string key, which is not counted)."""
    values = _values()
    start = NOW - 40 * DAY if roll else NOW
    batch = [
        Prediction(f"p{i}", WHO, start + i * 1000, start + i * 1000, {"s": float(v), "t": "x"})
        for i, v in enumerate(values)
    ]
    with open_store(database_url) as store:
        store.write_predictions(batch)
        if roll:
            assert store.rollup(RollupPolicy(), now_ms=NOW).raw_rolled == N
    return values


def _window() -> dict[str, Any]:
    return {"model_deployment_crn": WHO.deployment_crn, "end_timestamp_ms": NOW + DAY}


def test_exact_from_raw_records_matches_numpy() -> None:
    values = _fill()
    got = modelyard.read_distribution("s", **_window(), quantiles=QS, bins=10)
    assert set(got) == {
        "key", "count", "exact", "rank_error", "quantiles", "bin_edges", "bin_counts", "min",
        "max", "mean",
    }  # fmt: skip
    assert got["count"] == N and got["exact"] is True and got["rank_error"] == 0.0
    expected = np.quantile(values, QS, method="inverted_cdf")
    assert list(got["quantiles"]) == list(QS)
    assert list(got["quantiles"].values()) == pytest.approx(list(expected), rel=1e-12)
    counts, edges = np.histogram(values, bins=10)
    assert got["bin_counts"] == counts.tolist()
    assert got["bin_edges"] == pytest.approx(edges.tolist(), rel=1e-12)
    assert got["min"] == pytest.approx(values.min()) and got["max"] == pytest.approx(values.max())
    assert got["mean"] == pytest.approx(values.mean(), rel=1e-12)
    orjson.dumps(got, option=orjson.OPT_NON_STR_KEYS)  # JSON-ready


def test_rolled_up_window_is_approximate_within_the_stated_bound() -> None:
    values = _fill(roll=True)
    got = modelyard.read_distribution("s", **_window(), quantiles=QS)
    assert got["count"] == N and got["exact"] is False and 0 < got["rank_error"] < 0.05
    ordered = np.sort(values)
    for q, value in got["quantiles"].items():  # the value's rank is within rank_error of q
        rank = np.searchsorted(ordered, value, side="right") / N
        assert abs(rank - q) <= got["rank_error"] + 1 / N, (q, rank)
    assert sum(got["bin_counts"]) == N and len(got["bin_edges"]) == 21


def test_dev_mode_and_an_empty_window() -> None:
    @modelyard.model_metrics(dev=True)
    def predict(x: float) -> float:
        modelyard.track_metric("score", x)
        return x

    for x in (1.0, 2.0, 3.0, 4.0):
        predict(x)
    got = modelyard.read_distribution(
        "score", DEV_IDENTITY.deployment_crn, quantiles=(0.5,), bins=3, dev=True
    )
    assert (got["count"], got["quantiles"], got["bin_counts"]) == (4, {0.5: 2.0}, [1, 1, 2])
    empty = modelyard.read_distribution(
        "nothing", DEV_IDENTITY.deployment_crn, quantiles=(0.5,), dev=True
    )
    assert empty["count"] == 0 and empty["quantiles"] == {0.5: None} and empty["mean"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key": ""}, "key must be a metric name"),
        ({"key": "s", "quantiles": (0.5, 1.5)}, "quantile 1.5 is not a rank"),
        ({"key": "s", "quantiles": 0.5}, "quantiles must be a sequence"),
        ({"key": "s", "bins": 0}, "bins must be an int from 1 to 10000, got 0"),
        ({"key": "s", "start_timestamp_ms": 5, "end_timestamp_ms": 1}, "start_timestamp_ms=5"),
        ({"key": "s", "model_deployment_crn": None}, "at least one identifier"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict[str, Any], match: str) -> None:
    kwargs.setdefault("model_deployment_crn", WHO.deployment_crn)
    with pytest.raises(InvalidInput, match=match):
        modelyard.read_distribution(**kwargs)


@pytest.fixture
def remote(modelyard_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with remote_sdk(modelyard_home, monkeypatch) as url:
        yield url


def test_remote_gives_the_embedded_answer(
    remote: str, modelyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(f"sqlite:///{modelyard_home / 'modelyard.db'}")
    got = modelyard.read_distribution("s", **_window(), quantiles=QS, bins=7)
    assert backends.select().name == "remote"
    with pytest.raises(InvalidInput, match=r"quantile 2\.0 is not a rank"):
        modelyard.read_distribution("s", **_window(), quantiles=(2.0,))
    anonymous = httpx.get(f"{remote}/api/v1/metrics/distribution", params={"key": "s"})
    assert anonymous.status_code == 401  # authenticated like the other metrics routes

    monkeypatch.delenv("MODELYARD_URL")
    backends.close_all()
    assert backends.select().name == "embedded"
    assert modelyard.read_distribution("s", **_window(), quantiles=QS, bins=7) == got


def test_cli_prints_tables_or_json() -> None:
    values = _fill()
    args = ["metrics", "distribution", "s", "--deployment", WHO.deployment_crn]
    args += ["--until", str(NOW + DAY)]
    run = CliRunner().invoke
    as_json = run(cli, [*args, "--quantile", "0.5", "--bins", "4", "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = orjson.loads(as_json.stdout)  # stderr has the SDK's note on which store it uses
    assert data["count"] == N and data["quantiles"] == {
        "0.5": pytest.approx(float(np.quantile(values, 0.5, method="inverted_cdf")))
    }
    assert len(data["bin_counts"]) == 4
    table = run(cli, args, terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "p50" in table.output and "p99" in table.output and "Histogram" in table.output
    missing = run(cli, ["metrics", "distribution", "s"])
    assert missing.exit_code != 0 and "--deployment" in str(missing.exception)
