"""The dashboard's one look: how a number is written and which colour (and symbol) says what.

``fmt`` is the only way a page writes a number: the Jinja filter ``fmt`` on the server, and its
mirror ``Modelyard.fmt`` in ``static/format.js`` for what scripts refresh (a browser test runs
both over the same cases). Units: ``""`` a plain number, ``"count"`` a whole number with
thousands separators, ``"%"`` a ratio (0.123 -> ``12.3 %``), ``"ms"`` a duration (seconds from
10 s on), ``"/s"`` a rate, ``"bytes"`` a size in MiB or GiB.

One colour language on every page that colours state: calm is quiet (light, neutral), drift
and alerts stand out (warm, strong), and colour is never the only signal: every state carries a
word and a symbol, and a flagged heatmap cell carries ``FLAG``. ``DRIFT_COLORSCALE`` runs from
calm (0) to strong drift (1); the demo's HTML report uses the same scale.

>>> fmt(0.5785896657768209)
'0.579'
>>> fmt(1234567, "count"), fmt(0.0312, "%"), fmt(12.34, "ms"), fmt(None)
('1,234,567', '3.1 %', '12.3 ms', '–')
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from markupsafe import Markup, escape

__all__ = [
    "DRIFT_COLORSCALE",
    "DRIFT_STRONG",
    "FILTERS",
    "FLAG",
    "GLOBALS",
    "STATES",
    "badge",
    "drift_look",
    "fmt",
    "scale_legend",
    "sparkline",
]

DASH = "–"
FLAG = "⚑"
"""The symbol on a cell or row a monitor flagged (beside its colour)."""

DRIFT_COLORSCALE: tuple[tuple[float, str], ...] = (
    (0.0, "#f6f8fa"),  # calm: the page's own light neutral
    (0.2, "#fbeccb"),
    (0.45, "#f7c46c"),
    (0.7, "#e0702a"),
    (1.0, "#a40e26"),  # strong drift: the dashboard's alert red
)
"""Plotly colour scale for drift effects, from no drift (0, light neutral) to strong (1)."""

DRIFT_STRONG: dict[str, float] = {
    "psi": 0.5,  # 0.1 moderate and 0.25 major by the usual rule of thumb
    "ks": 0.3,
    "jensen_shannon": 0.3,
    "unseen_share": 0.2,
}
"""The effect drawn in the scale's strongest colour, per method; methods not named here
(unbounded effects) use the largest value shown."""

STATES: dict[str, tuple[str, str]] = {
    "healthy": ("●", "Healthy"),
    "degraded": ("▲", "Degraded"),
    "alerting": ("✖", "Alerting"),
    "stopped": ("■", "Stopped"),
    "starting": ("◌", "Starting"),
}
"""A model's state on the overview: its symbol and word (its colour is in ``app.css``)."""


def _fixed(value: float, digits: int) -> str:
    """``value`` rounded half away from zero (as JavaScript's ``toFixed`` does), with
    thousands separators."""
    exact = Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    if exact == 0:
        exact = abs(exact)  # no "-0.0"
    return f"{exact:,.{digits}f}"


def _plain(value: float) -> str:
    size = abs(value)
    if size == 0:
        return "0"
    if size >= 1000:
        return _fixed(value, 0)
    if size >= 100:
        return _fixed(value, 1)
    if size >= 1:
        return _fixed(value, 2)
    if size >= 0.001:
        return _fixed(value, 3)
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def fmt(value: Any, unit: str = "") -> str:
    """``value`` written for a person, in ``unit`` (see the module); ``–`` for no value, a text
    as it is."""
    if isinstance(value, str):
        return value or DASH
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return DASH
    number = float(value)
    if not math.isfinite(number):
        return DASH
    if unit == "count":
        return _fixed(number, 0)
    if unit == "%":
        share = number * 100
        if share == 0:
            return "0 %"
        return _fixed(share, 2 if abs(share) < 1 else 1) + " %"
    if unit == "ms":
        size = abs(number)
        if size == 0:
            return "0 ms"
        if size >= 10_000:
            return _fixed(number / 1000, 1) + " s"
        return _fixed(number, 2 if size < 1 else 1 if size < 100 else 0) + " ms"
    if unit == "/s":
        return _plain(number) + "/s"
    if unit == "bytes":
        mib = number / 1048576
        return _fixed(mib / 1024, 1) + " GiB" if abs(mib) >= 1024 else _fixed(mib, 1) + " MiB"
    if number.is_integer() and abs(number) < 1e15:  # JSON (and so the script) sees 3.0 as 3
        return _fixed(number, 0)
    return _plain(number)


def badge(state: str) -> Markup:
    """A state as a badge: symbol, word and colour (``STATES``), for the overview."""
    symbol, word = STATES.get(state, ("●", state.capitalize()))
    return Markup(
        f'<span class="state state-{escape(state)}" data-state="{escape(state)}">'
        f'<span aria-hidden="true">{symbol}</span> {escape(word)}</span>'
    )


def sparkline(
    values: Any, label: str, unit: str = "", width: int = 120, height: int = 28
) -> Markup:
    """A small line chart as inline SVG (no script, no style attribute: the page's CSP holds);
    ``label`` and the first, lowest, highest and last value are its accessible name."""
    points = [(i, float(v)) for i, v in enumerate(values or []) if _finite(v)]
    if len(points) < 2:
        return Markup(f'<span class="muted spark-none">{escape(DASH)}</span>')
    count = max(len(values) - 1, 1)
    ys = [v for _, v in points]
    low, high = min(ys), max(ys)
    span = (high - low) or 1.0
    pad = 3

    def xy(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * i / count
        y = height - pad - (height - 2 * pad) * ((v - low) / span if high > low else 0.5)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(i, v) for i, v in points)
    last_x, last_y = xy(*points[-1]).split(",")
    name = (
        f"{label}: {fmt(ys[0], unit)} to {fmt(ys[-1], unit)} "
        f"(lowest {fmt(low, unit)}, highest {fmt(high, unit)})"
    )
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(name)}"><title>{escape(name)}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{line}"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2.5" fill="currentColor"/></svg>'
    )


def _finite(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def scale_legend(low: str = "no drift", high: str = "strong drift") -> Markup:
    """``DRIFT_COLORSCALE`` as a swatch with its meaning written beside it."""
    stops = "".join(
        f'<stop offset="{offset:g}" stop-color="{colour}"/>' for offset, colour in DRIFT_COLORSCALE
    )
    return Markup(
        f'<span class="scale-legend"><span>calm: {escape(low)}</span>'
        '<svg width="140" height="14" viewBox="0 0 140 14" aria-hidden="true">'
        f'<defs><linearGradient id="drift-scale">{stops}</linearGradient></defs>'
        '<rect x="0.5" y="0.5" width="139" height="13" fill="url(#drift-scale)" '
        f'stroke="#8c959f"/></svg><span>{escape(high)} · {FLAG} flagged by the monitor</span>'
        "</span>"
    )


def drift_look() -> dict[str, Any]:
    """What the drift page's script draws the heatmap with (``static/app.js``)."""
    return {
        "colorscale": [list(stop) for stop in DRIFT_COLORSCALE],
        "strong": DRIFT_STRONG,
        "flag": FLAG,
    }


FILTERS = {"fmt": fmt, "badge": badge, "sparkline": sparkline}
"""The Jinja filters ``ui.common`` registers."""
GLOBALS = {"scale_legend": scale_legend, "drift_look": drift_look, "FLAG": FLAG}
"""The Jinja globals ``ui.common`` registers."""
