"""When a job runs: cron and interval schedules, missed slots, catch-up, and pipeline cycles.

Pure functions over epoch milliseconds, with no I/O and no clock of their own, so the scheduler,
the job spec (``specs.job.JobSpec`` checks schedules with ``JobSchedule.of``) and the tests share
one answer.

Cron iteration is croniter's; this module is the thin adapter around it that adds what croniter
does not give: errors that name the bad field, and one stated rule for time zones with daylight
saving time (see ``docs/jobs.md``):

- a cron expression is matched against the *local wall clock* of the job's IANA time zone;
- a wall time that does not exist (the hour skipped when clocks go forward) runs once, at the
  instant the clocks jumped to: ``30 2 * * *`` in Europe/Paris runs at 03:30 CEST that day;
- a wall time that happens twice (the hour repeated when clocks go back) runs once, at its first
  occurrence, unless the hour field matches every hour (``*``): such a job follows elapsed time
  and runs in both passes, so an hourly job stays hourly in UTC, with no gap and no duplicate;
- slots are strictly increasing instants; two wall times that land on the same instant give one
  slot.
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterError, croniter  # type: ignore[import-untyped]

from modelyard.errors import InvalidInput

__all__ = [
    "CATCH_UP_LIMIT",
    "DEFAULT_GRACE_MS",
    "MAX_EVERY_MS",
    "MIN_EVERY_MS",
    "CatchUp",
    "Cron",
    "JobSchedule",
    "check_timezone",
    "due_slots",
    "find_cycle",
    "format_cycle",
    "next_slot",
    "parse_cron",
    "slots_between",
]

# Catch-up ``all`` runs at most this many missed slots (the most recent ones): a server down for
# a week must not start 10,000 runs of a minutely job when it comes back.
CATCH_UP_LIMIT = 100
# Catch-up ``none`` still runs a slot seen this late: a scheduler that ticks, or was busy, for a
# few seconds past a slot has not "missed" it.
DEFAULT_GRACE_MS = 60_000
MIN_EVERY_MS = 1_000
MAX_EVERY_MS = 366 * 86_400_000

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names for values starting at lowest)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years count
_ITEM = re.compile(r"^(?:(\*)|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/([0-9]+))?$")
# Offsets are sampled this far on both sides of an instant to see a nearby DST change.
_NEAR_S = 26 * 3600


class CatchUp(StrEnum):
    """What to do with slots missed while no scheduler ran (the server was down).

    ``none``: skip them (only a slot within the grace of now runs); ``latest``: run the most
    recent one; ``all``: run every one, oldest first, at most ``CATCH_UP_LIMIT``.
    """

    NONE = "none"
    LATEST = "latest"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Cron:
    """A checked five-field cron expression (``expr``, macros expanded) and its expanded values.

    ``every_hour`` is True when the hour field matches all 24 hours: such a job runs in both
    passes of an hour repeated by a DST change.
    """

    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday (7 is folded into 0)

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24


@dataclass(frozen=True, slots=True)
class JobSchedule:
    """One job's schedule: exactly one of ``cron`` (matched in ``timezone``), ``every_ms``
    (slots at ``anchor_ms + k * every_ms`` for k >= 1, so aligned to the job's creation time),
    ``after`` (the parent job's id: runs follow the parent's successful runs) or ``manual``.

    ``anchor_ms`` is the job's creation time: interval slots count from it, and it is where
    catch-up starts for a job that never ran. Build one with ``JobSchedule.of`` to get the checks.
    """

    cron: str | None = None
    timezone: str = "UTC"
    every_ms: int | None = None
    after: str | None = None
    manual: bool = False
    anchor_ms: int = 0

    @property
    def kind(self) -> str:
        """``cron``, ``every``, ``after`` or ``manual``."""
        if self.cron is not None:
            return "cron"
        if self.every_ms is not None:
            return "every"
        if self.after is not None:
            return "after"
        return "manual"

    @property
    def timed(self) -> bool:
        """True for schedules that have slots of their own (cron and interval)."""
        return self.cron is not None or self.every_ms is not None

    @classmethod
    def of(
        cls,
        *,
        cron: str | None = None,
        timezone: str = "UTC",
        every_ms: int | None = None,
        after: str | None = None,
        manual: bool = False,
        anchor_ms: int = 0,
    ) -> JobSchedule:
        """A checked schedule; InvalidInput naming the bad value, or the kinds given when not
        exactly one of cron, every_ms, after and manual is."""
        given = [
            f"{name}={value!r}"
            for name, value in (("cron", cron), ("every_ms", every_ms), ("after", after))
            if value is not None
        ]
        if manual is not False:
            given.append(f"manual={manual!r}")
        if len(given) != 1:
            raise InvalidInput(
                f"a job needs exactly one schedule, got {', '.join(given) if given else 'none'}; "
                "give one of cron='*/5 * * * *' (with timezone=...), every_ms=30000, "
                "after='<parent job>' or manual=True",
                argument="schedule",
            )
        if manual is not False and manual is not True:
            raise InvalidInput(f"manual={manual!r} is not accepted; expected True or False")
        zone = check_timezone(timezone)
        if cron is not None:
            cron = parse_cron(cron).expr
        elif timezone != "UTC":
            raise InvalidInput(
                f"timezone={timezone!r} applies to cron schedules only; this schedule is "
                f"{given[0]}: leave timezone at 'UTC' or give a cron expression",
                argument="timezone",
            )
        if every_ms is not None and (
            isinstance(every_ms, bool)
            or not isinstance(every_ms, int)
            or not MIN_EVERY_MS <= every_ms <= MAX_EVERY_MS
        ):
            raise InvalidInput(
                f"every_ms={every_ms!r} is not accepted; expected an integer number of "
                f"milliseconds from {MIN_EVERY_MS} (1 s) to {MAX_EVERY_MS} (366 days)",
                argument="every_ms",
            )
        if after is not None and (not isinstance(after, str) or not after):
            raise InvalidInput(
                f"after={after!r} is not accepted; expected the parent job's name or id",
                argument="after",
            )
        if isinstance(anchor_ms, bool) or not isinstance(anchor_ms, int):
            raise InvalidInput(f"anchor_ms={anchor_ms!r} is not accepted; expected epoch ms")
        return cls(cron, zone.key, every_ms, after, bool(manual), anchor_ms)


# -- cron parsing ------------------------------------------------------------------------------
def parse_cron(expr: str) -> Cron:
    """Check a five-field cron expression (or a macro such as ``@daily``) and expand it.

    Each field is ``*``, a value, a range ``a-b``, either with a step ``/n``, or a comma list
    of those; months and weekdays also take names (``jan``, ``mon-fri``), weekday 7 is Sunday.
    Errors name the field: ``field 2 (hour) '25' is out of range 0-23``.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidInput(
            f"cron expression {expr!r} is not accepted; expected five fields 'minute hour "
            "day-of-month month day-of-week' such as '*/5 * * * *', or a macro such as @daily",
            argument="cron",
        )
    return _parse_cron(expr)


@lru_cache(maxsize=1024)
def _parse_cron(expr: str) -> Cron:
    text = " ".join(expr.split()).lower()
    if text.startswith("@"):
        if text not in _MACROS:
            raise InvalidInput(
                f"cron expression {expr!r}: unknown macro {text!r}; accepted: {', '.join(_MACROS)}",
                argument="cron",
            )
        text = _MACROS[text]
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidInput(
            f"cron expression {expr!r} has {len(fields)} field{'s' if len(fields) != 1 else ''}; "
            "expected 5: minute hour day-of-month month day-of-week (e.g. '*/5 * * * *'; "
            "seconds and years are not supported)",
            argument="cron",
        )
    sets = [_parse_field(expr, i, field) for i, field in enumerate(fields)]
    weekdays = frozenset(0 if d == 7 else d for d in sets[4])
    cron = Cron(text, sets[0], sets[1], sets[2], sets[3], weekdays)
    # With both day fields restricted cron matches either (always possible); with only the day
    # of month restricted, some listed month must have one of the listed days.
    if (
        fields[4] == "*"
        and fields[2] != "*"
        and not any(day <= _DAYS_IN_MONTH[month - 1] for month in cron.months for day in cron.days)
    ):
        raise InvalidInput(
            f"cron expression {expr!r}: field 3 (day of month) {fields[2]!r} never falls in "
            f"field 4 (month) {fields[3]!r}, so it would never run; choose days that exist in "
            "those months",
            argument="cron",
        )
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC))  # the iterator must agree
    except CroniterError as exc:  # pragma: no cover - the checks above are stricter
        raise InvalidInput(f"cron expression {expr!r} is not accepted ({exc})") from exc
    return cron


def _parse_field(expr: str, index: int, field: str) -> frozenset[int]:
    name, low, high, names = _FIELDS[index]
    where = f"cron expression {expr!r}: field {index + 1} ({name})"
    accepted = (
        f"expected *, a number {low}-{high}"
        + (f" or a name ({names[0]}..{names[-1]})" if names else "")
        + ", a range a-b, a step */n or a-b/n, or a comma list of those"
    )
    values: set[int] = set()
    for item in field.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise InvalidInput(f"{where} {item!r} is not accepted; {accepted}", argument="cron")
        star, first, last, step_text = match.groups()
        if star:
            start, stop = low, high
        else:
            start = _value(where, first, low, high, names, accepted)
            if not last:
                stop = high if step_text else start  # 'a/n' is 'a-<highest>/n'
            elif (stop := _value(where, last, low, high, names, accepted)) < start:
                raise InvalidInput(
                    f"{where} range {item!r} runs backwards; write it as two ranges, e.g. "
                    f"'{first}-{high},{low}-{last}'",
                    argument="cron",
                )
        step = 1
        if step_text is not None:
            step = int(step_text)
            if not 1 <= step <= high - low + 1:
                raise InvalidInput(
                    f"{where} step {item!r} is out of range; the step after '/' must be from 1 "
                    f"to {high - low + 1}",
                    argument="cron",
                )
        values.update(range(start, stop + 1, step))
    return frozenset(values)


def _value(
    where: str, text: str, low: int, high: int, names: tuple[str, ...], accepted: str
) -> int:
    if text.isdigit():
        value = int(text)
        if not low <= value <= high:
            raise InvalidInput(f"{where} {text!r} is out of range {low}-{high}", argument="cron")
        return value
    if text in names:
        return low + names.index(text)
    raise InvalidInput(f"{where} {text!r} is not accepted; {accepted}", argument="cron")


# -- time zones --------------------------------------------------------------------------------
def check_timezone(name: object) -> ZoneInfo:
    """The IANA time zone ``name``; InvalidInput suggesting close names if it is unknown."""
    if isinstance(name, str) and name:
        try:
            return _zone(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    close = (
        difflib.get_close_matches(name, sorted(available_timezones()), n=3)
        if isinstance(name, str)
        else []
    )
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise InvalidInput(
        f"timezone {name!r} is not an IANA time zone{hint}; expected a name such as 'UTC', "
        "'Europe/Paris' or 'America/New_York'",
        argument="timezone",
    )


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _offset_s(zone: ZoneInfo, epoch_s: int) -> int:
    offset = datetime.fromtimestamp(epoch_s, UTC).astimezone(zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _instants(zone: ZoneInfo, wall_s: int, both_passes: bool) -> tuple[int, ...]:
    """The epoch seconds at which the local wall time ``wall_s`` (wall clock read as if UTC)
    happens: one instant, two for a repeated time when ``both_passes``, and for a skipped time
    the instant the clocks jumped to (PEP 495: fold=0 uses the offset before the change)."""
    naive = datetime.fromtimestamp(wall_s, UTC).replace(tzinfo=zone)
    first = int(naive.replace(fold=0).timestamp())
    second = int(naive.replace(fold=1).timestamp())
    if first < second and both_passes:  # repeated wall time (clocks went back)
        return (first, second)
    return (first,)


def _cron_slots(cron: Cron, zone: ZoneInfo, after_ms: int) -> Iterator[int]:
    """Slots of ``cron`` in ``zone`` strictly after ``after_ms``, increasing, in ms.

    Wall times come from croniter in order, but their instants are not quite in order around a
    change of offset (a skipped wall time maps past the first wall times after the jump), so
    instants wait in a heap until no later wall time can map before them.
    """
    after_s = after_ms // 1000
    # Wall times shortly before wall(after) can still have an instant after ``after``: a skipped
    # time just behind us when the offset rose (it maps past the jump), and the wall times of
    # the first pass of a repeated hour when the offset is about to drop (their second pass is
    # ahead). Start that much earlier; the instants are filtered below.
    here = _offset_s(zone, after_s)
    rewind = max(
        0, here - _offset_s(zone, after_s - _NEAR_S), here - _offset_s(zone, after_s + _NEAR_S)
    )
    wall_after = after_s + here
    try:
        walls = croniter(cron.expr, datetime.fromtimestamp(wall_after - rewind - 1, UTC))
    except CroniterError:  # pragma: no cover - parse_cron checked it
        return
    heap: list[int] = []
    last_ms = after_ms
    while True:
        try:
            wall_s = int(walls.get_next(float))
        except CroniterError:  # no further match croniter can find
            break
        for instant in _instants(zone, wall_s, cron.every_hour):
            if instant * 1000 > last_ms:
                heapq.heappush(heap, instant)
        # Later wall times w map to instants >= w - (the largest offset around): anything in
        # the heap before that bound is final.
        while heap and heap[0] <= wall_s - _largest_offset_near(zone, heap[0]):
            instant = heapq.heappop(heap)
            if instant * 1000 > last_ms:
                last_ms = instant * 1000
                yield last_ms
    while heap:
        instant = heapq.heappop(heap)
        if instant * 1000 > last_ms:
            last_ms = instant * 1000
            yield last_ms


def _largest_offset_near(zone: ZoneInfo, epoch_s: int) -> int:
    return max(_offset_s(zone, epoch_s + d) for d in (-_NEAR_S, 0, _NEAR_S))


# -- slots -------------------------------------------------------------------------------------
def _iter_slots(schedule: JobSchedule, after_ms: int) -> Iterator[int]:
    if schedule.cron is not None:
        yield from _cron_slots(parse_cron(schedule.cron), _zone(schedule.timezone), after_ms)
    elif schedule.every_ms is not None:
        every, anchor = schedule.every_ms, schedule.anchor_ms
        k = max(1, (after_ms - anchor) // every + 1)
        while True:
            yield anchor + k * every
            k += 1


def next_slot(schedule: JobSchedule, after_ms: int) -> int | None:
    """The first slot strictly after ``after_ms`` (epoch ms); None for ``after`` and ``manual``
    schedules, which have no slots of their own."""
    return next(_iter_slots(schedule, after_ms), None)


def slots_between(schedule: JobSchedule, start_ms: int, end_ms: int, limit: int) -> list[int]:
    """Slots in ``(start_ms, end_ms]``, oldest first, at most ``limit`` (the earliest ones).

    The same slots repeated ``next_slot`` calls would give, in one pass.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidInput(f"limit={limit!r} is not accepted; expected an integer >= 0")
    if schedule.every_ms is not None and schedule.cron is None:
        every, anchor = schedule.every_ms, schedule.anchor_ms
        first = max(1, (start_ms - anchor) // every + 1)
        last = (end_ms - anchor) // every
        return [anchor + k * every for k in range(first, min(last, first + limit - 1) + 1)]
    found: list[int] = []
    if limit == 0:
        return found
    for slot in _iter_slots(schedule, start_ms):
        if slot > end_ms:
            break
        found.append(slot)
        if len(found) == limit:
            break
    return found


def _latest_slots(schedule: JobSchedule, after_ms: int, until_ms: int, count: int) -> list[int]:
    """The last ``count`` slots in ``(after_ms, until_ms]``, oldest first, without walking
    every slot since ``after_ms`` (a long outage of a minutely job): windows ending at
    ``until_ms`` grow eightfold until they hold ``count`` slots or reach ``after_ms``."""
    if until_ms <= after_ms or count <= 0:
        return []
    if schedule.cron is None and schedule.every_ms is not None:
        every, anchor = schedule.every_ms, schedule.anchor_ms
        last = (until_ms - anchor) // every
        first = max(1, (after_ms - anchor) // every + 1, last - count + 1)
        return [anchor + k * every for k in range(first, last + 1)]
    window = 3_600_000
    while True:
        start = max(after_ms, until_ms - window)
        found = slots_between(schedule, start, until_ms, 1 << 62)
        if len(found) >= count or start == after_ms:
            return found[-count:]
        window *= 8


def due_slots(
    schedule: JobSchedule,
    last_slot_ms: int | None,
    now_ms: int,
    catch_up: CatchUp | str,
    *,
    grace_ms: int = DEFAULT_GRACE_MS,
    limit: int = CATCH_UP_LIMIT,
) -> list[int]:
    """Slots to run now, oldest first, given the last slot already claimed (None: never ran,
    so slots count from the job's creation, ``schedule.anchor_ms``).

    Every slot in ``(last_slot_ms, now_ms]`` is due or missed: ``none`` keeps only the latest,
    and only if it is at most ``grace_ms`` old; ``latest`` keeps the latest; ``all`` keeps them
    all, at most ``limit`` (the most recent ones). ``after`` and ``manual`` schedules have none.
    """
    policy = _catch_up(catch_up)
    if not schedule.timed:
        return []
    since = schedule.anchor_ms if last_slot_ms is None else last_slot_ms
    if policy is CatchUp.ALL:
        return _latest_slots(schedule, since, now_ms, limit)
    latest = _latest_slots(schedule, since, now_ms, 1)
    if policy is CatchUp.NONE:
        return [s for s in latest if now_ms - s <= grace_ms]
    return latest


def _catch_up(value: object) -> CatchUp:
    if isinstance(value, str) and value in {c.value for c in CatchUp}:
        return CatchUp(value)
    raise InvalidInput(
        f"catch_up={value!r} is not accepted; accepted: {', '.join(c.value for c in CatchUp)}",
        argument="catch_up",
    )


# -- pipelines ---------------------------------------------------------------------------------
def find_cycle(edges: Iterable[tuple[str, str]], start: str | None = None) -> list[str] | None:
    """A cycle in the directed graph ``edges`` (``(parent, child)`` pairs, a pipeline's
    arrows), as ``[a, b, ..., a]``; None if there is none.

    The search starts at ``start`` when given, and a cycle through ``start`` is returned
    beginning there (the job a change would close the loop at); otherwise the output is
    deterministic, beginning at the cycle's smallest name.
    """
    graph: dict[str, list[str]] = {}
    for parent, dependent in edges:
        graph.setdefault(parent, []).append(dependent)
        graph.setdefault(dependent, [])
    for children in graph.values():
        children.sort()
    order = sorted(graph)
    if start is not None and start in graph:
        order.remove(start)
        order.insert(0, start)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in order:
        if root in state:
            continue
        path = [root]
        state[root] = 1
        stack = [iter(graph[root])]
        while stack:
            child: str | None = next(stack[-1], None)
            if child is None:
                stack.pop()
                state[path.pop()] = 2
            elif state.get(child) == 1:
                cycle = path[path.index(child) :]
                first = start if start is not None and start in cycle else min(cycle)
                at = cycle.index(first)
                cycle = cycle[at:] + cycle[:at]
                return [*cycle, cycle[0]]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(graph[child]))
    return None


def format_cycle(cycle: list[str]) -> str:
    """``a -> b -> a``."""
    return " -> ".join(cycle)
