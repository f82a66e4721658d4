"""An experiment's definition, checked once: ``ExperimentSpec``, what the CLI sends (as JSON,
``POST /api/v1/experiments``) and what ``registry.experiments.create`` records.

An experiment is one batch run of ``script`` with ``args`` in a snapshot of a project folder:
``upload`` (an id from ``POST /api/v1/uploads``, what the CLI sends) or, for server
administrators, ``project`` (a folder on the server's machine). The server replaces ``upload``
by the folder it keeps for it, so the registry always sees ``project``.

>>> spec = ExperimentSpec(script="train.py", project="/srv/iris", args=["--depth", "3"], cpus=2)
>>> spec.timeout_ms, spec.resources
(3600000, {'cpus': 2.0, 'memory': None, 'gpus': 0, 'accelerator': None})
>>> ExperimentSpec(script="train.py", project="/srv/iris", gpus=-1)
Traceback (most recent call last):
...
modelyard.errors.InvalidInput: gpus=-1 is not accepted; expected an integer from 0 to 16
"""

from __future__ import annotations

import os
import re
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from modelyard.errors import InvalidInput
from modelyard.settings import parse_size_bytes
from modelyard.specs._base import Spec
from modelyard.specs.checks import check_path, check_relative_path
from modelyard.specs.job import (
    JOB_RESERVED_ENV,
    MAX_ARGS,
    MAX_TIMEOUT_MS,
    MIN_TIMEOUT_MS,
    JobSpec,
    Overlap,
    _strings,
    check_run_env,
)
from modelyard.specs.secret_names import check_secret_names, check_secrets_not_in_env

__all__ = [
    "EXPERIMENT_RESERVED_ENV",
    "MAX_CPUS",
    "MAX_GPUS",
    "MAX_LABEL",
    "ExperimentSpec",
]

MAX_CPUS = 256.0
MAX_GPUS = 16
MAX_LABEL = 200
# Set by the runner for experiment runs on top of what every job run gets.
EXPERIMENT_RESERVED_ENV = JOB_RESERVED_ENV | {"MODELYARD_RUN_DIR", "MODELYARD_EXPERIMENT"}
_ACCELERATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")


class ExperimentSpec(Spec):
    """One experiment run: ``script`` (a path inside the project) with ``args``, in the
    environment of ``requirements`` if given, with ``env`` and project ``secrets``, stopped
    after ``timeout_ms``; ``label`` is its display name; ``cpus``, ``memory``, ``gpus`` and
    ``accelerator`` are the resources it asks for (recorded with the run)."""

    script: str = Field(description="the script's path inside the project, such as 'train.py'")
    args: tuple[str, ...] = Field(default=(), description="the script's arguments")
    project: str | None = Field(
        default=None,
        description="the project folder's absolute path on the server's machine (server "
        "administrators only; others send 'upload')",
    )
    upload: str | None = Field(
        default=None, description="the id of an upload of the project folder (POST /uploads)"
    )
    requirements: str | None = Field(
        default=None, description="a requirements file inside the project: the run's environment"
    )
    label: str | None = Field(default=None, description="a display name for the run")
    env: dict[str, str] = Field(default_factory=dict)
    secrets: tuple[str, ...] = Field(
        default=(), description="names of project secrets the run gets as environment variables"
    )
    timeout_ms: int = Field(default=3_600_000, description="the run is stopped after this")
    cpus: float | None = Field(default=None, description="CPUs the run asks for")
    memory: int | None = Field(default=None, description="memory in bytes ('512M' accepted)")
    gpus: int = Field(default=0, description="GPUs the run asks for")
    accelerator: str | None = Field(default=None, description="an accelerator type, e.g. 'a100'")

    @property
    def resources(self) -> dict[str, Any]:
        """What the run asks for, as recorded (``jobs.resources``)."""
        return {
            "cpus": self.cpus,
            "memory": self.memory,
            "gpus": self.gpus,
            "accelerator": self.accelerator,
        }

    def job_spec(self, name: str) -> JobSpec:
        """The one-off manual job that carries the run out (``project`` must be set)."""
        if self.project is None:
            raise InvalidInput(
                "project is missing; expected the project folder (the server sets it from "
                "'upload')",
                argument="project",
            )
        return JobSpec(
            name=name,
            project=self.project,
            script=self.script,
            requirements=self.requirements,
            args=self.args,
            manual=True,
            timeout_ms=self.timeout_ms,
            env=self.env,
            secrets=self.secrets,
            overlap=Overlap.ALLOW,
            notify_on=(),
            cpus=self.cpus,
            memory=self.memory,
            gpus=self.gpus,
            accelerator=self.accelerator,
        )

    @model_validator(mode="after")
    def _secrets_not_in_env(self) -> Self:
        check_secrets_not_in_env(self.secrets, self.env)
        return self

    @field_validator("script", mode="before")
    @classmethod
    def _script(cls, value: object) -> str:
        checked = check_relative_path("script", value)
        if checked is None:
            raise InvalidInput(
                "script=None is not accepted; expected the script's path inside the project, "
                "such as 'train.py'",
                argument="script",
            )
        return checked

    @field_validator("requirements", mode="before")
    @classmethod
    def _requirements(cls, value: object) -> str | None:
        return check_relative_path("requirements", value)

    @field_validator("project", mode="before")
    @classmethod
    def _project(cls, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        accepted = "the project folder's absolute path"
        if not isinstance(value, str) or not os.path.isabs(value):
            raise InvalidInput(
                f"project={value!r} is not accepted; expected {accepted}", argument="project"
            )
        return check_path(value, "project", accepted)

    @field_validator("upload", mode="before")
    @classmethod
    def _upload(cls, value: object) -> str | None:
        if value is None or (isinstance(value, str) and 0 < len(value) <= 200):
            return value
        raise InvalidInput(
            f"upload={value!r:.100} is not accepted; expected an upload id from POST "
            "/api/v1/uploads",
            argument="upload",
        )

    @field_validator("label", mode="before")
    @classmethod
    def _label(cls, value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_LABEL:
            raise InvalidInput(
                f"label={value!r:.100} is not accepted; expected a name of 1 to {MAX_LABEL} "
                "characters",
                argument="label",
            )
        if any(ord(c) < 32 for c in value):
            raise InvalidInput(
                f"label={value!r:.100} has a control character; expected printable text",
                argument="label",
            )
        return value.strip()

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: object) -> tuple[str, ...]:
        return _strings("args", value, MAX_ARGS)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: object) -> dict[str, str]:
        return check_run_env(value, EXPERIMENT_RESERVED_ENV, "every experiment run")

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets(cls, value: object) -> tuple[str, ...]:
        return check_secret_names(value)

    @field_validator("timeout_ms", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not MIN_TIMEOUT_MS <= value <= MAX_TIMEOUT_MS
        ):
            raise InvalidInput(
                f"timeout_ms={value!r} is not accepted; expected milliseconds from "
                f"{MIN_TIMEOUT_MS} (1 s) to {MAX_TIMEOUT_MS} (7 days)",
                argument="timeout_ms",
            )
        return value

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, value: object) -> float | None:
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= MAX_CPUS
        ):
            raise InvalidInput(
                f"cpus={value!r} is not accepted; expected a number above 0 and at most "
                f"{MAX_CPUS:g}, such as 2 or 0.5",
                argument="cpus",
            )
        return float(value)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: object) -> int | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = parse_size_bytes(value, "memory")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidInput(
                f"memory={value!r} is not accepted; expected bytes > 0 or a size such as '512M' "
                "or '2G'",
                argument="memory",
            )
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GPUS:
            raise InvalidInput(
                f"gpus={value!r} is not accepted; expected an integer from 0 to {MAX_GPUS}",
                argument="gpus",
            )
        return value

    @field_validator("accelerator", mode="before")
    @classmethod
    def _accelerator(cls, value: object) -> str | None:
        if value is None or (isinstance(value, str) and _ACCELERATOR.match(value)):
            return value
        raise InvalidInput(
            f"accelerator={value!r:.100} is not accepted; expected a type name of letters, "
            "digits and '_.:-' such as 'nvidia-a100'",
            argument="accelerator",
        )
