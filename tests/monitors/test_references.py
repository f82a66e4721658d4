"""Reference samples kept in the store: round trip, the row cap, and the errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.monitors import MAX_ROWS, list_references, load_reference, upload_reference
from modelyard.store.base import MetricsStore

from .conftest import identity


def test_round_trip_keeps_values_and_dtypes(sdk_store: MetricsStore) -> None:
    who = identity()
    sdk_store.register_identity(who)
    frame = pd.DataFrame(
        {
            "tenure": [1.5, np.nan, 3.25],
            "count": [1, 2, 3],
            "plan": ["basic", None, "pro"],
            "active": [True, False, True],
        }
    )
    info = upload_reference(frame, who.deployment_crn)
    assert (info["rows"], info["total_rows"], info["columns"]) == (3, 3, list(frame.columns))
    back = load_reference(who.deployment_crn)
    assert back["plan"].tolist() == ["basic", None, "pro"]  # missing text comes back as None
    pd.testing.assert_frame_equal(back.drop(columns="plan"), frame.drop(columns="plan"))
    assert [r["name"] for r in list_references(who.deployment_crn)] == ["training"]


def test_large_frames_are_sampled_to_the_cap_and_names_replace(sdk_store: MetricsStore) -> None:
    who = identity()
    sdk_store.register_identity(who)
    frame = pd.DataFrame({"x": np.arange(1000, dtype=float)})
    info = upload_reference(frame, who.deployment_crn, "big", max_rows=100)
    assert (info["rows"], info["total_rows"]) == (100, 1000)
    sample = load_reference(who.deployment_crn, "big")
    assert len(sample) == 100 and sample["x"].is_unique and sample["x"].isin(frame["x"]).all()
    upload_reference(frame.head(5), who.deployment_crn, "big")
    assert len(load_reference(who.deployment_crn, "big")) == 5
    with pytest.raises(InvalidInput, match="max_rows"):
        upload_reference(frame, who.deployment_crn, max_rows=MAX_ROWS + 1)


def test_errors_name_what_is_wrong(sdk_store: MetricsStore) -> None:
    who = identity()
    with pytest.raises(NotFound, match="deployment/"):
        upload_reference(pd.DataFrame({"x": [1]}), who.deployment_crn)
    sdk_store.register_identity(who)
    upload_reference(pd.DataFrame({"x": [1]}), who.deployment_crn, "training")
    with pytest.raises(NotFound, match=r"'holdout'.*\['training'\]"):
        load_reference(who.deployment_crn, "holdout")
    with pytest.raises(InvalidInput, match="empty"):
        upload_reference(pd.DataFrame(), who.deployment_crn)
    with pytest.raises(InvalidInput, match="'when' holds Timestamp"):
        upload_reference(
            pd.DataFrame({"when": pd.to_datetime(["2026-01-01"]).astype(object)}),
            who.deployment_crn,
        )
