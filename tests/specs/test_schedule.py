"""specs.schedule on worked examples: cron errors that name the field, time zones across the
2026 daylight-saving changes, intervals, catch-up policies and pipeline cycles.

Times are written as UTC datetimes and compared as such; the comments give the local time.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest

from modelyard.errors import InvalidInput
from modelyard.specs.schedule import (
    CATCH_UP_LIMIT,
    DEFAULT_GRACE_MS,
    JobSchedule,
    check_timezone,
    due_slots,
    find_cycle,
    format_cycle,
    next_slot,
    parse_cron,
    slots_between,
)

HOUR = 3_600_000
MINUTE = 60_000


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def cron(expr: str, timezone: str = "UTC") -> JobSchedule:
    return JobSchedule.of(cron=expr, timezone=timezone)


# -- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 25 * * *", "field 2 (hour) '25' is out of range 0-23"),
        ("61 * * * *", "field 1 (minute) '61' is out of range 0-59"),
        ("0 0 0 * *", "field 3 (day of month) '0' is out of range 1-31"),
        ("0 0 * 13 *", "field 4 (month) '13' is out of range 1-12"),
        ("0 0 * * 8", "field 5 (day of week) '8' is out of range 0-7"),
        ("x * * * *", "field 1 (minute) 'x' is not accepted; expected *, a number 0-59"),
        ("0 0 * foo *", "field 4 (month) 'foo' is not accepted; expected *, a number 1-12 or a "),
        ("*/0 * * * *", "field 1 (minute) step '*/0' is out of range"),
        ("0 5-2 * * *", "field 2 (hour) range '5-2' runs backwards; write it as two ranges"),
        ("0 0,,1 * * *", "field 2 (hour) '' is not accepted"),
        ("* * * *", "has 4 fields; expected 5"),
        ("* * * * * *", "has 6 fields; expected 5"),
        ("@sometimes", "unknown macro '@sometimes'; accepted: @yearly"),
        ("", "expected five fields"),
        (["* * * * *"], "cron expression ['* * * * *'] is not accepted"),
        ("0 0 31 2 *", "field 3 (day of month) '31' never falls in field 4 (month) '2'"),
        ("0 0 30,31 feb *", "never falls in field 4 (month) 'feb'"),
    ],
)
def test_a_bad_cron_expression_names_the_field_and_what_is_accepted(
    expr: Any, message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_cron(expr)
    assert message in str(caught.value)
    assert repr(expr) in str(caught.value)


def test_cron_syntax_expands_to_the_values_cron_means() -> None:
    every_five = parse_cron("*/5 * * * *")
    assert sorted(every_five.minutes) == list(range(0, 60, 5))
    assert every_five.every_hour and len(every_five.days) == 31
    weekdays = parse_cron("0 9-17/4 * jan,jul mon-fri")
    assert sorted(weekdays.hours) == [9, 13, 17]
    assert sorted(weekdays.months) == [1, 7]
    assert sorted(weekdays.weekdays) == [1, 2, 3, 4, 5]
    assert not weekdays.every_hour
    assert parse_cron("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    assert sorted(parse_cron("5/20 * * * *").minutes) == [5, 25, 45]
    assert parse_cron("@daily").expr == "0 0 * * *"
    assert parse_cron("  0   3 * * SUN ").expr == "0 3 * * sun"
    assert parse_cron("0 0 29 2 *").days == {29}  # leap days exist


def test_schedules_need_exactly_one_kind_and_say_which_were_given() -> None:
    with pytest.raises(InvalidInput, match=r"exactly one schedule, got none"):
        JobSchedule.of()
    with pytest.raises(InvalidInput, match=r"got cron='\* \* \* \* \*', every_ms=1000;"):
        JobSchedule.of(cron="* * * * *", every_ms=1000)
    with pytest.raises(InvalidInput, match=r"got after='a', manual=True"):
        JobSchedule.of(after="a", manual=True)
    with pytest.raises(InvalidInput, match=r"every_ms=999 is not accepted; .* from 1000 \(1 s\)"):
        JobSchedule.of(every_ms=999)
    with pytest.raises(InvalidInput, match=r"timezone='Europe/Paris' applies to cron schedules"):
        JobSchedule.of(every_ms=1000, timezone="Europe/Paris")
    with pytest.raises(InvalidInput, match=r"manual='yes' is not accepted"):
        JobSchedule.of(manual="yes")  # type: ignore[arg-type]
    assert JobSchedule.of(manual=True).kind == "manual"
    assert JobSchedule.of(after="parent").kind == "after"
    assert JobSchedule.of(every_ms=1000).kind == "every"
    assert cron("@hourly", "Asia/Tokyo").kind == "cron"


def test_an_unknown_time_zone_suggests_close_names() -> None:
    with pytest.raises(InvalidInput, match=r"'Europe/Pariss' is not an IANA .*'Europe/Paris'"):
        check_timezone("Europe/Pariss")
    with pytest.raises(InvalidInput, match=r"timezone '../etc/passwd' is not an IANA"):
        check_timezone("../etc/passwd")
    with pytest.raises(InvalidInput, match=r"timezone 5 is not"):
        check_timezone(5)
    assert check_timezone("America/New_York").key == "America/New_York"


# -- cron slots in time zones ----------------------------------------------------------------------
def test_cron_slots_follow_the_local_wall_clock() -> None:
    # 09:00 in Tokyo (UTC+9, no DST) is 00:00 UTC; weekdays only.
    schedule = cron("0 9 * * mon-fri", "Asia/Tokyo")
    slots = slots_between(schedule, ms(2026, 11, 20), ms(2026, 11, 29), 100)
    assert slots == [ms(2026, 11, d) for d in (23, 24, 25, 26, 27)]  # Fri 20th: at 00:00, excluded
    assert next_slot(schedule, ms(2026, 11, 23)) == ms(2026, 11, 24)  # strictly after


def test_paris_daily_0230_runs_once_on_the_spring_forward_day_at_0330() -> None:
    # 2026-03-29: at 02:00 CET clocks jump to 03:00 CEST; 02:30 does not exist that day.
    schedule = cron("30 2 * * *", "Europe/Paris")
    slots = slots_between(schedule, ms(2026, 3, 27), ms(2026, 3, 31), 10)
    assert slots == [
        ms(2026, 3, 27, 1, 30),  # 02:30 CET
        ms(2026, 3, 28, 1, 30),  # 02:30 CET
        ms(2026, 3, 29, 1, 30),  # 03:30 CEST: the instant clocks jumped past 02:30
        ms(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_paris_daily_0230_runs_once_on_the_fall_back_day_at_the_first_0230() -> None:
    # 2026-10-25: at 03:00 CEST clocks go back to 02:00 CET; 02:30 happens twice.
    schedule = cron("30 2 * * *", "Europe/Paris")
    slots = slots_between(schedule, ms(2026, 10, 23), ms(2026, 10, 27), 10)
    assert slots == [
        ms(2026, 10, 23, 0, 30),
        ms(2026, 10, 24, 0, 30),
        ms(2026, 10, 25, 0, 30),  # 02:30 CEST, the first time; not again at 02:30 CET
        ms(2026, 10, 26, 1, 30),
    ]
    # Asking from between the two 02:30s gives the next day, not the second pass.
    assert next_slot(schedule, ms(2026, 10, 25, 1, 0)) == ms(2026, 10, 26, 1, 30)


@pytest.mark.parametrize(
    ("day", "zone"),
    [
        ((2026, 3, 29), "Europe/Paris"),
        ((2026, 10, 25), "Europe/Paris"),
        ((2026, 3, 8), "America/New_York"),
        ((2026, 11, 1), "America/New_York"),
        ((2026, 4, 5), "America/Santiago"),  # changes at local midnight
        ((2026, 9, 6), "America/Santiago"),
    ],
)
def test_an_hourly_job_has_no_gap_and_no_duplicate_in_utc_across_a_change(
    day: tuple[int, int, int], zone: str
) -> None:
    for expr in ("0 * * * *", "@hourly", "17 * * * *"):
        schedule = cron(expr, zone)
        start = ms(*day) - 12 * HOUR
        slots = slots_between(schedule, start, start + 48 * HOUR, 1000)
        assert len(slots) == 48
        assert {b - a for a, b in pairwise(slots)} == {HOUR}


def test_every_quarter_hour_stays_every_quarter_hour_through_both_paris_changes() -> None:
    schedule = cron("*/15 * * * *", "Europe/Paris")
    for start in (ms(2026, 3, 28, 22), ms(2026, 10, 24, 22)):
        slots = slots_between(schedule, start, start + 6 * HOUR, 1000)
        assert len(slots) == 24
        assert {b - a for a, b in pairwise(slots)} == {15 * MINUTE}


def test_fixed_hours_on_the_fall_back_day_run_once_each() -> None:
    # 01:00 CEST, 02:00 CEST (first pass only), 03:00 CET.
    schedule = cron("0 1-3 * * *", "Europe/Paris")
    slots = slots_between(schedule, ms(2026, 10, 24, 20), ms(2026, 10, 25, 12), 10)
    assert slots == [ms(2026, 10, 24, 23), ms(2026, 10, 25, 0), ms(2026, 10, 25, 2)]


def test_new_york_spring_forward_moves_0230_to_0330_edt() -> None:
    schedule = cron("30 2 * * *", "America/New_York")
    assert next_slot(schedule, ms(2026, 3, 8)) == ms(2026, 3, 8, 7, 30)  # 03:30 EDT
    assert next_slot(schedule, ms(2026, 3, 8, 7, 30)) == ms(2026, 3, 9, 6, 30)  # 02:30 EDT


def test_asking_just_after_the_jump_still_finds_the_moved_slot() -> None:
    # At 03:10 CEST (01:10Z) on the spring-forward day the moved 02:30 slot (03:30 CEST) is
    # still ahead: the wall clock reads past 02:30, but the slot's instant has not come.
    schedule = cron("30 2 * * *", "Europe/Paris")
    assert next_slot(schedule, ms(2026, 3, 29, 1, 10)) == ms(2026, 3, 29, 1, 30)


# -- intervals -------------------------------------------------------------------------------------
def test_interval_slots_are_aligned_to_the_job_creation_time() -> None:
    created = ms(2026, 5, 1, 10, 0) + 12_345
    schedule = JobSchedule.of(every_ms=30_000, anchor_ms=created)
    assert next_slot(schedule, created - 10**9) == created + 30_000  # the first is one interval in
    assert next_slot(schedule, created) == created + 30_000
    assert next_slot(schedule, created + 30_000) == created + 60_000
    assert next_slot(schedule, created + 59_999) == created + 60_000
    assert slots_between(schedule, created, created + 100_000, 10) == [
        created + 30_000,
        created + 60_000,
        created + 90_000,
    ]
    assert slots_between(schedule, created, created + 10**9, 2) == [
        created + 30_000,
        created + 60_000,
    ]
    assert slots_between(schedule, created, created + 10**9, 0) == []


def test_dependent_and_manual_schedules_have_no_slots() -> None:
    for schedule in (JobSchedule.of(after="parent"), JobSchedule.of(manual=True)):
        assert next_slot(schedule, 0) is None
        assert slots_between(schedule, 0, 10**12, 10) == []
        assert due_slots(schedule, None, 10**12, "all") == []


# -- catch-up --------------------------------------------------------------------------------------
def test_catch_up_policies_after_an_outage() -> None:
    schedule = cron("*/10 * * * *")
    last = ms(2026, 6, 1, 8, 0)  # claimed before the server stopped
    now = ms(2026, 6, 1, 9, 5)  # back up: 08:10 .. 09:00 were missed
    missed = [last + k * 10 * MINUTE for k in range(1, 7)]
    assert due_slots(schedule, last, now, "all") == missed
    assert due_slots(schedule, last, now, "latest") == [missed[-1]]
    assert due_slots(schedule, last, now, "none") == []  # 5 minutes late: beyond the grace
    assert due_slots(schedule, last, missed[-1] + DEFAULT_GRACE_MS, "none") == [missed[-1]]
    assert due_slots(schedule, last, now, "none", grace_ms=10 * MINUTE) == [missed[-1]]
    # On time: every policy runs the one slot that just came.
    assert due_slots(schedule, missed[-2], missed[-1] + 500, "none") == [missed[-1]]
    assert due_slots(schedule, missed[-2], missed[-1] + 500, "all") == [missed[-1]]
    # Nothing due yet.
    assert due_slots(schedule, missed[-1], missed[-1] + 9 * MINUTE, "all") == []


def test_catch_up_all_keeps_the_most_recent_slots_up_to_the_limit() -> None:
    schedule = cron("* * * * *")
    last = ms(2026, 1, 1)
    now = ms(2026, 2, 1)  # a month of minutely slots missed
    due = due_slots(schedule, last, now, "all")
    assert len(due) == CATCH_UP_LIMIT
    assert due[-1] == now and due == sorted(due)
    assert due[0] == now - (CATCH_UP_LIMIT - 1) * MINUTE
    assert due_slots(schedule, last, now, "all", limit=3) == [now - 2 * MINUTE, now - MINUTE, now]
    interval = JobSchedule.of(every_ms=1000, anchor_ms=0)
    assert due_slots(interval, None, 10**9, "all") == list(range(10**9 - 99_000, 10**9 + 1, 1000))


def test_a_job_that_never_ran_counts_missed_slots_from_its_creation() -> None:
    created = ms(2026, 6, 1, 8, 3)
    schedule = JobSchedule.of(cron="0 * * * *", anchor_ms=created)
    assert due_slots(schedule, None, ms(2026, 6, 1, 8, 59), "all") == []
    assert due_slots(schedule, None, ms(2026, 6, 1, 10, 30), "all") == [
        ms(2026, 6, 1, 9),
        ms(2026, 6, 1, 10),
    ]


def test_a_sparse_cron_finds_its_latest_slot_far_back() -> None:
    schedule = cron("0 0 29 2 *")  # leap days only
    assert due_slots(schedule, ms(2015, 1, 1), ms(2026, 6, 1), "latest") == [ms(2024, 2, 29)]
    assert due_slots(schedule, ms(2015, 1, 1), ms(2026, 6, 1), "all") == [
        ms(2016, 2, 29),
        ms(2020, 2, 29),
        ms(2024, 2, 29),
    ]


def test_an_unknown_catch_up_policy_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"catch_up='some' is not accepted; accepted: none"):
        due_slots(cron("* * * * *"), 0, 1, "some")


# -- cycles ----------------------------------------------------------------------------------------
def test_find_cycle() -> None:
    assert find_cycle([]) is None
    assert find_cycle([("a", "b"), ("b", "c"), ("a", "c")]) is None  # a diamond is no cycle
    assert find_cycle([("a", "a")]) == ["a", "a"]
    loop = [("extract", "train"), ("train", "score"), ("score", "extract"), ("x", "extract")]
    assert find_cycle(loop) == ["extract", "train", "score", "extract"]
    assert find_cycle(loop, start="score") == ["score", "extract", "train", "score"]
    assert format_cycle(["a", "b", "a"]) == "a -> b -> a"
    # Deep chains do not hit the recursion limit.
    chain = [(f"j{i}", f"j{i + 1}") for i in range(5000)]
    assert find_cycle(chain) is None
    assert find_cycle([*chain, ("j5000", "j0")], start="j0") == [f"j{i}" for i in range(5001)] + [
        "j0"
    ]


def test_the_registry_and_the_jobs_package_import_in_either_order() -> None:
    """The registry checks schedules with specs.schedule; jobs' own modules use the registry."""
    for first in ("modelyard.registry", "modelyard.jobs", "modelyard.specs.schedule"):
        subprocess.run([sys.executable, "-c", f"import {first}"], check=True, timeout=60)
