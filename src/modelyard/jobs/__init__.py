"""Jobs: recurring, dependent and manual runs of a script (see ``docs/jobs.md``).

The schedule vocabulary lives in ``modelyard.specs.schedule`` (the CLI, REST and the registry
check schedules there too) and is re-exported here for code that knows it by its old home. The
scheduler and the runner are imported from their modules (``modelyard.jobs.scheduler``,
``modelyard.jobs.runner``): ``import modelyard`` loads this package, and they pull in the
registry, the runtime and builds, which a notebook that only tracks metrics never needs.
"""

from __future__ import annotations

from modelyard.specs.schedule import (
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
