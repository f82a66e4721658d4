"""The dashboard's one look (``modelyard.ui.look``): numbers, states, sparklines, the drift
colour scale's direction; and the overview's health rule (``views.trends.model_health``)."""

from __future__ import annotations

import math

import pytest

from modelyard.ui.look import DRIFT_COLORSCALE, FLAG, badge, fmt, scale_legend, sparkline
from modelyard.views.trends import model_health

# (value, unit, expected): tests/ui/test_accessibility.py runs the same table through the
# script's mirror (static/format.js) in Chromium.
CASES: list[tuple[object, str, str]] = [
    (0.5785896657768209, "", "0.579"),
    (12.3456, "", "12.35"),
    (123.456, "", "123.5"),
    (123456.7, "", "123,457"),
    (3.0, "", "3"),
    (1234567, "", "1,234,567"),
    (0.0000123, "", "1.23e-5"),
    (-0.0001, "", "-1.00e-4"),
    (-12.5, "", "-12.50"),
    (0, "", "0"),
    (1.005, "", "1.00"),  # the exact binary value is below 1.005: both round down
    (1234567, "count", "1,234,567"),
    (2.5, "count", "3"),
    (0.0312, "%", "3.1 %"),
    (0.00312, "%", "0.31 %"),
    (0, "%", "0 %"),
    (1, "%", "100.0 %"),
    (12.34, "ms", "12.3 ms"),
    (0.421, "ms", "0.42 ms"),
    (0, "ms", "0 ms"),
    (1234.5, "ms", "1,235 ms"),
    (12345, "ms", "12.3 s"),
    (12.345, "/s", "12.35/s"),
    (123456789, "bytes", "117.7 MiB"),
    (2e9, "bytes", "1.9 GiB"),
    (None, "", "–"),
    (math.nan, "ms", "–"),
    (math.inf, "", "–"),
    (True, "", "–"),
    ("n/a", "", "n/a"),
]


@pytest.mark.parametrize(("value", "unit", "expected"), CASES)
def test_fmt_writes_numbers_with_sensible_precision_and_units(
    value: object, unit: str, expected: str
) -> None:
    assert fmt(value, unit) == expected


def _luminance(colour: str) -> float:
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_the_drift_scale_runs_from_quiet_to_strong() -> None:
    offsets = [offset for offset, _ in DRIFT_COLORSCALE]
    assert offsets[0] == 0 and offsets[-1] == 1 and offsets == sorted(offsets)
    lights = [_luminance(colour) for _, colour in DRIFT_COLORSCALE]
    assert lights == sorted(lights, reverse=True), lights  # darker as drift grows
    assert lights[0] > 0.9 and lights[-1] < 0.25  # calm is near white, strong drift is dark
    calm = DRIFT_COLORSCALE[0][1]
    r, g, b = (int(calm[i : i + 2], 16) for i in (1, 3, 5))
    assert max(r, g, b) - min(r, g, b) < 10  # and neutral: no hue
    legend = scale_legend()
    assert "no drift" in legend and "strong drift" in legend and FLAG in legend


def test_the_demo_report_draws_drift_on_the_same_scale() -> None:
    import inspect

    from modelyard.demo import report

    source = inspect.getsource(report)
    assert "DRIFT_COLORSCALE" in source and "reversescale" not in source


def test_a_state_badge_has_a_word_and_a_symbol() -> None:
    html = str(badge("alerting"))
    assert "Alerting" in html and "✖" in html and 'aria-hidden="true"' in html
    assert "state-alerting" in html
    assert "<script>" not in str(badge("<script>"))


def test_a_sparkline_is_an_svg_with_an_accessible_name() -> None:
    svg = str(sparkline([1, 2, None, 4.5], "requests per second", "/s"))
    assert svg.startswith("<svg") and 'role="img"' in svg and "style=" not in svg
    assert 'aria-label="requests per second: 1.00/s to 4.50/s' in svg
    assert "spark-none" in str(sparkline([None, 3], "x"))  # one point: no line


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "state": "active",
        "deployment_crn": "crn:modelyard:deployment/d",
        "replicas": {"healthy": 2, "total": 2},
        "error_rate": 0.0,
        "drift_flagged": [],
        "open_alerts": [],
        "preparing_what": None,
    }
    row.update(changes)
    return row


def test_model_health() -> None:
    assert model_health(_row()) == ("healthy", [])
    assert model_health(_row(replicas={"healthy": 1, "total": 2}))[0] == "degraded"
    assert model_health(_row(error_rate=0.05)) == ("degraded", ["5.0 % of requests failed"])
    assert model_health(_row(drift_flagged=["tenure"]))[0] == "degraded"
    assert model_health(_row(drift_flagged=3))[1] == ["drift flagged on 3 features"]
    firing = model_health(_row(open_alerts=[{"rule": "roc_auc < 0.7"}], drift_flagged=["a"]))
    assert firing == ("alerting", ["1 alert firing", "drift flagged on 1 feature"])
    assert model_health(_row(state="stopped", deployment_crn=None))[0] == "stopped"
    assert model_health(_row(state="not serving", deployment_crn=None))[0] == "stopped"
    assert model_health(_row(state="preparing", preparing_what="environment"))[0] == "starting"
