"""Jobs: recurring, dependent and manual runs of a script (see ``docs/jobs.md``).

``modelyard.jobs.schedule`` is pure (cron, intervals, catch-up, cycles) and the registry imports
it to check schedules. Keep this package's ``__init__`` as light as that: importing a scheduler
or runner here (which use the registry) would make ``import modelyard.registry`` circular.
"""

from __future__ import annotations

from modelyard.jobs.schedule import (
    CATCH_UP_LIMIT,
    DEFAULT_GRACE_MS,
    CatchUp,
    Cron,
    JobSchedule,
    check_timezone,
    due_slots,
    find_cycle,
    format_cycle,
    next_slot,
    parse_cron,
    slots_between,
)

__all__ = [
    "CATCH_UP_LIMIT",
    "DEFAULT_GRACE_MS",
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
