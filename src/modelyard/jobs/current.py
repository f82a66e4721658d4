"""``current_run()``: what a job run's process knows about itself, read from its environment.

The runner starts every run with ``MODELYARD_JOB``, ``MODELYARD_RUN_ID``,
``MODELYARD_SCHEDULED_AT`` (the slot, ISO 8601 UTC) and ``MODELYARD_URL``. A monitoring script
computes its window from the slot, not from the wall clock, so a run that starts late (a retry, a
catch-up after downtime) still reads the interval it was scheduled for.

This module is imported by ``import modelyard``, so it uses the standard library only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

from modelyard.errors import InvalidInput

__all__ = ["JOB_ENV", "RUN_ID_ENV", "SCHEDULED_AT_ENV", "URL_ENV", "CurrentRun", "current_run"]

JOB_ENV = "MODELYARD_JOB"
RUN_ID_ENV = "MODELYARD_RUN_ID"
SCHEDULED_AT_ENV = "MODELYARD_SCHEDULED_AT"
URL_ENV = "MODELYARD_URL"


@dataclass(frozen=True, slots=True)
class CurrentRun:
    """The run this process belongs to.

    ``run_id`` is the run's uuid (the last part of its ``crn:modelyard:run/<uuid>`` id, the form
    the API's ``/api/v1/runs/{run_id}`` paths and run log files use); ``scheduled_at`` is the slot
    as an aware UTC datetime; ``url`` is the server the run reports to (None when unset).
    """

    job: str
    run_id: str
    scheduled_at: datetime
    url: str | None

    @property
    def scheduled_ms(self) -> int:
        """The slot in epoch milliseconds."""
        return int(self.scheduled_at.timestamp() * 1000)


def current_run() -> CurrentRun | None:
    """The job run this process is, or None outside a run.

    >>> import os
    >>> os.environ.update(MODELYARD_JOB="nightly", MODELYARD_RUN_ID="4f1c",
    ...                   MODELYARD_SCHEDULED_AT="2026-03-01T02:00:00Z")
    >>> run = current_run()
    >>> run.job, run.scheduled_at.isoformat()
    ('nightly', '2026-03-01T02:00:00+00:00')
    >>> for name in ("MODELYARD_JOB", "MODELYARD_RUN_ID", "MODELYARD_SCHEDULED_AT"):
    ...     del os.environ[name]
    >>> current_run() is None
    True
    """
    job = os.environ.get(JOB_ENV)
    run_id = os.environ.get(RUN_ID_ENV)
    if not job or not run_id:
        return None
    raw = os.environ.get(SCHEDULED_AT_ENV, "")
    return CurrentRun(
        job=job, run_id=run_id, scheduled_at=parse_slot(raw), url=os.environ.get(URL_ENV) or None
    )


def parse_slot(raw: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (a naive one is taken as UTC)."""
    text = raw.strip()
    try:
        # Python 3.11's fromisoformat accepts the trailing 'Z' the runner writes.
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{SCHEDULED_AT_ENV}={raw!r} is not an ISO 8601 time; expected a UTC time such as "
            "'2026-03-01T02:00:00Z' (the runner sets it to the run's slot)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_slot(slot_ms: int) -> str:
    """``slot_ms`` as the ISO 8601 UTC text ``MODELYARD_SCHEDULED_AT`` carries."""
    moment = datetime.fromtimestamp(slot_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
