"""Properties of specs.schedule, checked by hypothesis around real daylight-saving changes.

- ``next_slot`` is strictly increasing;
- ``slots_between`` gives exactly what repeated ``next_slot`` gives;
- ``next_slot`` agrees with a brute-force reading of the documented rule: walk every local wall
  minute, keep those croniter's own expansion of the expression matches, map each to its
  instant(s) (a skipped time to the instant clocks jumped to, a repeated time to its first pass,
  or to both when the hour field is ``*``), take the earliest instant after the question;
- interval slots are ``anchor + k * every``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.specs.schedule import JobSchedule, next_slot, slots_between

ZONES = (
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "America/Santiago",  # changes at local midnight
    "Australia/Lord_Howe",  # a 30-minute change
    "Australia/Sydney",
)
# Every expression matches at least once a day, so a 30-hour window always holds the answer.
EXPRESSIONS = (
    "* * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "30 * * * *",
    "*/7 */2 * * *",
    "30 2 * * *",
    "0 0 * * *",
    "15 1-3 * * *",
    "10,50 2,3 * * *",
    "45 23 * * *",
    "0 9-17 * * *",
)
HOUR_S = 3600


def transitions(zone: ZoneInfo) -> list[int]:
    """Epoch seconds of the 2026 offset changes of ``zone`` (half-hour resolution)."""
    found = []
    t = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    previous = datetime.fromtimestamp(t, UTC).astimezone(zone).utcoffset()
    while t < end:
        t += 1800
        offset = datetime.fromtimestamp(t, UTC).astimezone(zone).utcoffset()
        if offset != previous:
            found.append(t)
        previous = offset
    return found or [t]


CHANGES = {name: transitions(ZoneInfo(name)) for name in ZONES}


@st.composite
def questions(draw: st.DrawFn) -> tuple[JobSchedule, int]:
    """A cron schedule and an instant within 36 hours of one of its zone's changes."""
    zone = draw(st.sampled_from(ZONES))
    change = draw(st.sampled_from(CHANGES[zone]))
    after_ms = change * 1000 + draw(st.integers(-36 * HOUR_S * 1000, 36 * HOUR_S * 1000))
    if draw(st.booleans()):
        after_ms -= after_ms % 60_000  # exactly on a minute, as slots are
    expr = draw(st.sampled_from(EXPRESSIONS))
    return JobSchedule.of(cron=expr, timezone=zone), after_ms


def oracle_next(schedule: JobSchedule, after_ms: int) -> int:
    assert schedule.cron is not None
    zone = ZoneInfo(schedule.timezone)
    expanded, _ = croniter.expand(schedule.cron)
    minutes, hours, days, months, weekdays = (
        None if field == ["*"] else {int(v) % 7 if i == 4 else int(v) for v in field}
        for i, field in enumerate(expanded)
    )
    both_passes = hours is None
    after = datetime.fromtimestamp(after_ms / 1000, UTC)
    wall = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    best = None
    minute = wall - timedelta(hours=3)
    while minute <= wall + timedelta(hours=30):
        weekday = (minute.weekday() + 1) % 7  # cron: 0 is Sunday
        if days is not None and weekdays is not None:
            day_ok = minute.day in days or weekday in weekdays
        else:
            day_ok = (days is None or minute.day in days) and (
                weekdays is None or weekday in weekdays
            )
        if (
            day_ok
            and (minutes is None or minute.minute in minutes)
            and (hours is None or minute.hour in hours)
            and (months is None or minute.month in months)
        ):
            first = int(minute.replace(tzinfo=zone, fold=0).timestamp()) * 1000
            second = int(minute.replace(tzinfo=zone, fold=1).timestamp()) * 1000
            instants = [first, second] if first < second and both_passes else [first]
            for instant in instants:
                if instant > after_ms and (best is None or instant < best):
                    best = instant
        minute += timedelta(minutes=1)
    assert best is not None, "the oracle's window holds no slot"
    return best


@settings(max_examples=150, deadline=None)
@given(questions())
def test_next_slot_is_the_earliest_instant_the_rule_gives(
    question: tuple[JobSchedule, int],
) -> None:
    schedule, after_ms = question
    assert next_slot(schedule, after_ms) == oracle_next(schedule, after_ms)


@settings(max_examples=150, deadline=None)
@given(questions(), st.integers(1, 40))
def test_next_slot_increases_and_slots_between_repeats_it(
    question: tuple[JobSchedule, int], count: int
) -> None:
    schedule, after_ms = question
    walked = []
    at = after_ms
    for _ in range(count):
        slot = next_slot(schedule, at)
        assert slot is not None and slot > at and slot % 60_000 == 0
        walked.append(slot)
        at = slot
    assert slots_between(schedule, after_ms, walked[-1], count + 5) == walked
    assert slots_between(schedule, after_ms, walked[-1], count // 2) == walked[: count // 2]
    assert slots_between(schedule, after_ms, walked[-1] - 1, count) == walked[:-1]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-(10**12), 10**12),
    st.integers(1_000, 366 * 86_400_000),
    st.integers(-(10**12), 10**12),
    st.integers(0, 20),
)
def test_interval_slots_are_anchor_plus_whole_intervals(
    anchor: int, every: int, after: int, count: int
) -> None:
    schedule = JobSchedule(every_ms=every, anchor_ms=anchor)
    slot = next_slot(schedule, after)
    assert slot is not None and slot > after
    assert (slot - anchor) % every == 0 and slot - anchor >= every
    assert slot - every <= max(after, anchor)  # none skipped
    end = slot + count * every
    assert slots_between(schedule, after, end, count + 1) == [
        slot + k * every for k in range(count + 1)
    ]
