"""Page-Hinkley and ADWIN on seeded error streams: detection delay and false alarms.

Streams: 0/1 errors at rate 0.1 for 2,000 predictions, then 0.3 (a classifier that got worse).
Over 200 seeds each detector must detect within a stated delay and raise no alarm on the stable
part in almost every seed. The delays and rates asserted are quoted in docs/analysis.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.analysis import ADWIN, PageHinkley, detect
from modelyard.errors import InvalidInput

SEEDS = 200
CHANGE = 2000


def _stream(seed: int, before: float = 0.1, after: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.r_[rng.random(CHANGE) < before, rng.random(1000) < after].astype(float)


def _run(make) -> tuple[float, list[int]]:
    false_alarms, delays = 0, []
    for seed in range(SEEDS):
        hits = detect(make(), _stream(seed))
        false_alarms += any(h < CHANGE for h in hits)
        later = [h - CHANGE for h in hits if h >= CHANGE]
        delays.append(later[0] if later else 10**9)
    return false_alarms / SEEDS, delays


@pytest.mark.parametrize(
    ("make", "max_false", "median_delay", "p95_delay"),
    [
        (ADWIN, 0.02, 200, 400),
        (lambda: PageHinkley(mode="up", threshold=25.0), 0.03, 200, 300),
    ],
    ids=["adwin", "page-hinkley"],
)
def test_detects_a_rise_in_error_rate_without_false_alarms(
    make, max_false, median_delay, p95_delay
) -> None:
    rate, delays = _run(make)
    print(
        f"false-alarm seeds {rate:.3f}, delay median {np.median(delays)}, p95 "
        f"{np.quantile(delays, 0.95)}"
    )
    assert rate <= max_false
    assert np.median(delays) <= median_delay
    assert np.quantile(delays, 0.95) <= p95_delay


def test_adwin_window_and_estimate_follow_the_stream() -> None:
    rng = np.random.default_rng(0)
    adwin = ADWIN()
    values = rng.normal(5.0, 1.0, 3000)
    for v in values:
        adwin.update(v)
    assert adwin.width == 3000  # no change, nothing dropped
    assert adwin.estimation == pytest.approx(values.mean())
    assert adwin.variance / adwin.width == pytest.approx(values.var(), rel=1e-9)
    for v in rng.normal(8.0, 1.0, 500):
        adwin.update(v)
    assert adwin.width < 1000 and adwin.estimation == pytest.approx(8.0, abs=0.2)


def test_page_hinkley_directions() -> None:
    down = np.r_[np.ones(300), np.zeros(300)]
    assert detect(PageHinkley(mode="up", threshold=20.0), down) == []
    hits = detect(PageHinkley(mode="down", threshold=20.0), down)
    assert hits and 300 < hits[0] < 400
    assert detect(PageHinkley(mode="both", threshold=20.0), down)[0] == hits[0]


def test_parameters_are_checked() -> None:
    with pytest.raises(InvalidInput, match="mode='sideways'"):
        PageHinkley(mode="sideways")
    with pytest.raises(InvalidInput, match="delta=2"):
        ADWIN(delta=2)
