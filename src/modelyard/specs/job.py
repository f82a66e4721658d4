"""A job's definition, checked once: ``JobSpec``, the one object the CLI builds, the REST API
parses a request body into and the registry stores (``Registry.create_job(spec)``).

Every field is checked by the spec, with messages that name the field, the value and what is
accepted; the schedule goes through ``JobSchedule.of`` (cron fields, time zone, exactly one
kind). What needs more than the spec is checked where it lives: the parent of a dependent job
and cycles of ``after`` links by the registry (they need the other jobs), the project's files by
the server (they need its machine).

>>> spec = JobSpec(name="nightly-drift", project="/srv/churn", script="monitor.py", every_ms=60_000)
>>> spec.schedule.kind, spec.timeout_ms, spec.notify_on
('every', 3600000, ('failure', 'timeout'))
>>> JobSpec(name="x", project="/srv/churn", script="m.py", manual=True, retries=11)
Traceback (most recent call last):
...
modelyard.errors.InvalidInput: retries=11 is not accepted; expected an integer from 0 to 10
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from modelyard.errors import InvalidInput
from modelyard.settings import parse_size_bytes
from modelyard.specs._base import Spec
from modelyard.specs.checks import (
    MODEL_NAME_RULE,
    check_accelerator,
    check_cpus,
    check_env,
    check_gpus,
    check_memory,
    check_path,
    check_relative_path,
)
from modelyard.specs.schedule import CatchUp, JobSchedule
from modelyard.specs.secret_names import check_secret_names, check_secrets_not_in_env

__all__ = [
    "JOB_RESERVED_ENV",
    "MAX_BACKOFF_MS",
    "MAX_RETRIES",
    "MAX_TIMEOUT_MS",
    "MIN_TIMEOUT_MS",
    "NOTIFY_ON",
    "UPDATABLE",
    "JobSpec",
    "Overlap",
    "check_changes",
    "check_job_name",
    "check_run_env",
]

MIN_TIMEOUT_MS = 1_000
MAX_TIMEOUT_MS = 7 * 86_400_000
MAX_RETRIES = 10
MAX_BACKOFF_MS = 86_400_000
MAX_ARGS = 256
MAX_NOTIFY = 20
NOTIFY_ON = ("success", "failure", "timeout", "cancelled")
# The runner sets these for every run; a job's env must not override them.
JOB_RESERVED_ENV = frozenset(
    {
        "MODELYARD_URL",
        "MODELYARD_API_KEY",
        "MODELYARD_JOB",
        "MODELYARD_RUN_ID",
        "MODELYARD_SCHEDULED_AT",
    }
)
_SCHEDULE_KEYS = ("cron", "every_ms", "after", "manual")
UPDATABLE = (
    "project",
    "script",
    "monitor",
    "requirements",
    "args",
    "cron",
    "timezone",
    "every_ms",
    "after",
    "manual",
    "timeout_ms",
    "retries",
    "retry_backoff_ms",
    "env",
    "overlap",
    "catch_up",
    "notify",
    "notify_on",
    "secrets",
    "cpus",
    "memory",
    "gpus",
    "accelerator",
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")


class Overlap(StrEnum):
    """What the scheduler does with a slot while a run of the job is still going: ``skip`` it
    (recorded, not run), ``queue`` it (runs when the previous run ends) or ``allow`` it (runs
    at once, side by side)."""

    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"


def check_changes(changes: Mapping[str, Any]) -> None:
    """InvalidInput naming the first field of ``changes`` that a job update cannot change."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise InvalidInput(
            f"job field {unknown[0]!r} cannot be updated; accepted: {', '.join(UPDATABLE)} "
            "(set_paused pauses and resumes)",
            argument=unknown[0],
        )


def check_job_name(name: object) -> str:
    if not isinstance(name, str) or MODEL_NAME_RULE.match(name) is None:
        raise InvalidInput(
            f"job name {name!r} is not accepted; a name is 1 to 63 characters of lowercase "
            "letters, digits and '-', starting with a letter or digit (e.g. 'nightly-drift'), "
            "because it appears in URLs",
            name=repr(name),
        )
    return name


class JobSpec(Spec):
    """A job: run ``script`` (or the monitor spec ``monitor``), paths inside the absolute
    ``project`` folder, optionally in the environment of its ``requirements`` file, on exactly
    one schedule: ``cron`` (matched in ``timezone``), ``every_ms``, ``after`` (a parent job's
    name or id) or ``manual``. Durations are milliseconds."""

    name: str = Field(description="the job's name, such as 'nightly-drift'")
    project: str = Field(
        description="the absolute path of the project folder that holds its script or monitor "
        "spec (on the server's host)"
    )
    script: str | None = Field(default=None, description="the script's path inside the project")
    monitor: str | None = Field(
        default=None,
        description="instead of script: a monitor spec (YAML) inside the project; the job runs "
        "'python -m modelyard.monitors run SPEC'",
    )
    requirements: str | None = Field(
        default=None,
        description="a requirements file inside the project: runs use its environment (built "
        "once per distinct requirements and reused, as for model builds)",
    )
    args: tuple[str, ...] = ()
    cron: str | None = Field(default=None, description="five cron fields, e.g. '*/5 * * * *'")
    timezone: str = Field(default="UTC", description="IANA time zone of the cron (default UTC)")
    every_ms: int | None = None
    after: str | None = Field(default=None, description="parent job: runs after each success of it")
    manual: bool = False
    timeout_ms: int = 3_600_000
    retries: int = 0
    retry_backoff_ms: int = 30_000
    env: dict[str, str] = Field(default_factory=dict)
    overlap: Overlap = Field(default=Overlap.SKIP, description="skip (default), queue or allow")
    catch_up: CatchUp = Field(default=CatchUp.LATEST, description="none, latest (default) or all")
    notify: tuple[str, ...] = Field(default=(), description="webhook URLs and e-mail addresses")
    notify_on: tuple[str, ...] = Field(
        default=("failure", "timeout"), description="subset of success, failure, timeout, cancelled"
    )
    secrets: tuple[str, ...] = Field(
        default=(),
        description="names of project secrets each run gets as environment variables (set with "
        "'modelyard secrets set NAME'); a missing one fails the run, naming it",
    )
    cpus: float | None = Field(default=None, description="CPUs each run may use (enforced)")
    memory: int | None = Field(
        default=None, description="resident memory each run may use, bytes ('512M' accepted)"
    )
    gpus: int = Field(default=0, description="whole GPUs each run gets exclusively")
    accelerator: str | None = Field(default=None, description="GPU type, e.g. 'A100'")

    @property
    def resources(self) -> dict[str, Any]:
        """What each run asks for, as recorded on the job (``jobs.resources``); {} for none."""
        asked = {
            "cpus": self.cpus,
            "memory": self.memory,
            "gpus": self.gpus,
            "accelerator": self.accelerator,
        }
        return asked if any(asked.values()) else {}

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, value: object) -> float | None:
        return check_cpus(value)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: object) -> int | None:
        if isinstance(value, str):
            value = parse_size_bytes(value, "memory")
        try:
            return check_memory(value)
        except InvalidInput as exc:
            message = exc.message.replace("memory_bytes=", "memory=")
            raise InvalidInput(message, argument="memory") from exc

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: object) -> int:
        return check_gpus(value)

    @field_validator("accelerator", mode="before")
    @classmethod
    def _accelerator(cls, value: object) -> str | None:
        return check_accelerator(value)

    @property
    def schedule(self) -> JobSchedule:
        """The schedule (``after`` as given, a name or an id; anchored at 0)."""
        return JobSchedule(self.cron, self.timezone, self.every_ms, self.after, self.manual)

    # -- changes ----------------------------------------------------------------------------------
    def changed(self, changes: Mapping[str, Any]) -> Self:
        """This spec with ``changes`` applied and checked as a whole. Any of ``cron``,
        ``every_ms``, ``after``, ``manual`` replaces the whole schedule (the time zone stays
        with a cron); a new script replaces a monitor spec and the other way round."""
        check_changes(changes)
        fields = self.model_dump()
        if any(key in changes for key in _SCHEDULE_KEYS):
            for key in _SCHEDULE_KEYS:
                fields[key] = changes.get(key, False if key == "manual" else None)
            if changes.get("cron") is None or self.cron is None:
                fields["timezone"] = "UTC"
        if changes.get("script") is not None and "monitor" not in changes:
            fields["monitor"] = None
        if changes.get("monitor") is not None and "script" not in changes:
            fields["script"] = None
        fields.update(changes)
        return type(self)(**fields)

    # -- checks -----------------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _check_schedule(cls, data: Any) -> Any:
        """Exactly one schedule kind, each value checked (``JobSchedule.of``); the cron is kept
        as normalised there (macros expanded)."""
        if not isinstance(data, Mapping):
            return data
        schedule = JobSchedule.of(
            cron=data.get("cron"),
            timezone=data["timezone"] if data.get("timezone") is not None else "UTC",
            every_ms=data.get("every_ms"),
            after=data.get("after"),
            manual=data.get("manual", False),
        )
        return {
            **data,
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "manual": schedule.manual,
        }

    @model_validator(mode="after")
    def _script_or_monitor(self) -> Self:
        """Exactly one of a script and a monitor spec."""
        if (self.script is None) == (self.monitor is None):
            given = "both were given" if self.script is not None else "neither was given"
            raise InvalidInput(
                f"script={self.script!r} and monitor={self.monitor!r}: {given}; a job runs "
                "either a script (its path inside the project, such as 'monitor.py') or a "
                "monitor spec (such as 'monitor.yaml')",
                argument="script",
            )
        return self

    @model_validator(mode="after")
    def _secrets_not_in_env(self) -> Self:
        """A variable comes from ``env`` or from ``secrets``, never both."""
        check_secrets_not_in_env(self.secrets, self.env)
        return self

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets(cls, value: object) -> tuple[str, ...]:
        return check_secret_names(value)

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object) -> str:
        return check_job_name(value)

    @field_validator("project", mode="before")
    @classmethod
    def _project(cls, value: object) -> str:
        accepted = "the project folder's absolute path"
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            raise InvalidInput(
                f"project={value!r} is not accepted; expected {accepted}", argument="project"
            )
        text = check_path(value, "project", accepted)
        if not os.path.isabs(text):
            raise InvalidInput(
                f"project={text!r} is not an absolute path; expected the project folder's "
                "absolute path (the CLI resolves --project-dir DIR for you)",
                argument="project",
            )
        return text

    @field_validator("script", "monitor", "requirements", mode="before")
    @classmethod
    def _relative(cls, value: object, info: Any) -> str | None:
        return check_relative_path(info.field_name, value)

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: object) -> tuple[str, ...]:
        return _strings("args", value, MAX_ARGS)

    @field_validator("timeout_ms", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> int:
        what = f"milliseconds from {MIN_TIMEOUT_MS} (1 s) to {MAX_TIMEOUT_MS} (7 days)"
        return _int_in("timeout_ms", value, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, what)

    @field_validator("retries", mode="before")
    @classmethod
    def _retries(cls, value: object) -> int:
        return _int_in("retries", value, 0, MAX_RETRIES, f"an integer from 0 to {MAX_RETRIES}")

    @field_validator("retry_backoff_ms", mode="before")
    @classmethod
    def _backoff(cls, value: object) -> int:
        what = f"milliseconds from 0 to {MAX_BACKOFF_MS} (1 day)"
        return _int_in("retry_backoff_ms", value, 0, MAX_BACKOFF_MS, what)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: object) -> dict[str, str]:
        return check_run_env(value, JOB_RESERVED_ENV, "every run")

    @field_validator("overlap", "catch_up", mode="before")
    @classmethod
    def _choice(cls, value: object, info: Any) -> StrEnum:
        enum: type[StrEnum] = Overlap if info.field_name == "overlap" else CatchUp
        if isinstance(value, str) and value in {m.value for m in enum}:
            return enum(value)
        raise InvalidInput(
            f"{info.field_name}={value!r} is not accepted; accepted: "
            f"{', '.join(m.value for m in enum)}",
            argument=info.field_name,
        )

    @field_validator("notify", mode="before")
    @classmethod
    def _notify(cls, value: object) -> tuple[str, ...]:
        targets = _strings("notify", value, MAX_NOTIFY)
        for target in targets:
            if _URL.match(target) is None and _EMAIL.match(target) is None:
                raise InvalidInput(
                    f"notify target {target!r} is neither a webhook URL nor an e-mail address; "
                    "expected 'https://hooks.example.com/path' or 'ops@example.com'",
                    argument="notify",
                )
        return tuple(dict.fromkeys(targets))

    @field_validator("notify_on", mode="before")
    @classmethod
    def _notify_on(cls, value: object) -> tuple[str, ...]:
        events = _strings("notify_on", value, len(NOTIFY_ON) * 4)
        unknown = [e for e in events if e not in NOTIFY_ON]
        if unknown:
            raise InvalidInput(
                f"notify_on={list(events)!r}: {unknown[0]!r} is not an outcome; accepted: any "
                f"of {', '.join(NOTIFY_ON)}",
                argument="notify_on",
            )
        return tuple(e for e in NOTIFY_ON if e in events)


def _int_in(argument: str, value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"{argument}={value!r} is not accepted; expected {what}", argument=argument
        )
    return value


def check_run_env(value: object, reserved: frozenset[str], runs: str) -> dict[str, str]:
    """``env`` of a job or an experiment: ``check_env``'s rules, and none of the ``reserved``
    names the runner sets for ``runs`` itself."""
    env = check_env(value)
    taken = sorted(reserved & set(env))
    if taken:
        raise InvalidInput(
            f"env variable {taken[0]!r} is set by Modelyard for {runs}; accepted: any name "
            f"except {', '.join(sorted(reserved))}",
            argument="env",
        )
    return env


def _strings(argument: str, value: object, limit: int) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput(
            f"{argument}={value!r} is not accepted; expected a list of strings",
            argument=argument,
        )
    items = tuple(value)
    if len(items) > limit:
        raise InvalidInput(
            f"{argument} has {len(items)} items; accepted: at most {limit}", argument=argument
        )
    for item in items:
        if not isinstance(item, str) or "\x00" in item or len(item) > 4096:
            raise InvalidInput(
                f"{argument} item {item!r} is not accepted; expected a string of at most 4096 "
                "characters without NUL bytes",
                argument=argument,
            )
    return items
