"""What ``modelyard models deploy`` asks the server to build and run (``DeploySpec``), and what
a finished build is recorded as (``BuildSpec``).

The CLI builds one and sends it; the REST API reads the request body as one (a body that does not
fit is a 422 naming the field, the framework's answer for bodies). The checks that need the
server's machine (the project folder exists, ``requirements`` lies inside it) stay with the
server; the build checks the files again against the project's snapshot; the registry checks
what it stores (replicas, env, memory, cpus) with the same rules (``specs.checks``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from modelyard.errors import InvalidInput
from modelyard.ids import check_crn
from modelyard.settings import parse_size_bytes
from modelyard.specs._base import Spec
from modelyard.specs.checks import (
    check_accelerator,
    check_relative_path,
    check_text,
    encode_json,
)
from modelyard.specs.secret_names import check_secret_names, check_secrets_not_in_env

__all__ = ["BuildSpec", "DeploySpec"]


class DeploySpec(Spec):
    """A deploy: the ``upload`` sent from the client (or, for server administrators, the
    ``project`` folder: an absolute path on the server's host), the ``file``
    and ``function`` that predict, optionally a ``requirements`` file, replicas and their limits,
    and the names of the project ``secrets`` each replica gets as environment variables.
    ``settings`` takes ``ModelSettings`` fields (``auth_required``, ``concurrency``,
    ``request_timeout_s``, ``batch_function``, ``track_io``, ``debug``, ``retry``...); for an
    existing model only the fields given change. ``settings={"retry": false}`` (the CLI's
    ``--no-retry``) declares the model not safe to resend: a request whose replica died before
    answering gets 502 instead of one resend to another replica."""

    # Bodies arrive as JSON (numbers for cpus may be integers); a spec is not changed in place.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    project: str | None = Field(
        default=None,
        description="Absolute path of the project folder on the server's host (server "
        "administrators only); or give ``upload``.",
    )
    upload: str | None = Field(
        default=None,
        description="Id of an upload (``POST /api/v1/uploads``): the folder sent from the "
        "client. Exactly one of ``project`` and ``upload``.",
    )
    file: str = "predict.py"
    function: str = "predict"
    example: Any = None
    requirements: str | None = Field(
        default=None,
        description="requirements file, relative to the project (or absolute inside it)",
    )
    replicas: int = Field(default=1, ge=1, le=256)  # deploy runs at least one (scale may go to 0)
    env: dict[str, str] = Field(default_factory=dict)
    memory: str | int | None = Field(default=None, description="per replica, e.g. 512M or bytes")
    cpus: float | None = Field(default=None, gt=0)
    gpus: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="whole GPUs per replica, exclusively (a model setting: None keeps the model's)",
    )
    accelerator: str | None = Field(default=None, description="GPU type, e.g. 'A100'")
    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: tuple[str, ...] = Field(
        default=(),
        description="names of project secrets each replica gets as environment variables "
        "(set with 'modelyard secrets set NAME'); a missing one fails the deploy",
    )

    from_run: str | None = Field(
        default=None,
        description="An experiment run (CRN, uuid or unique uuid prefix) whose kept files are "
        "added to the folder built (``--from-run``)",
    )
    model_format: Literal["mlflow", "onnx", "sklearn"] | None = Field(
        default=None,
        description="Serve a model users already have instead of a predict function: "
        "``model_path`` names it (see docs/importing.md)",
    )
    model_path: str | None = Field(
        default=None,
        description="The model's file or MLflow folder, relative to the folder deployed ('.': "
        "the folder itself); with ``model_format`` only",
    )
    trust_pickle: bool = Field(
        default=False,
        description="Load a pickle or joblib scikit-learn file (runs any code it names)",
    )
    trusted_types: tuple[str, ...] = Field(
        default=(),
        description="Types a .skops file may hold beyond those skops trusts (``--trust-type``)",
    )

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets(cls, value: Any) -> tuple[str, ...]:
        return check_secret_names(value)

    @field_validator("accelerator", mode="before")
    @classmethod
    def _accelerator(cls, value: Any) -> str | None:
        return check_accelerator(value)

    @property
    def model_settings(self) -> dict[str, Any]:
        """``settings`` with ``gpus`` and ``accelerator`` (model settings) folded in."""
        extra: dict[str, Any] = {}
        if self.gpus is not None:
            extra["gpus"] = self.gpus
        if self.accelerator is not None:
            extra["accelerator"] = self.accelerator
        return {**self.settings, **extra}

    @model_validator(mode="after")
    def _import_fields(self) -> DeploySpec:
        """``model_path`` goes with ``model_format``; the scikit-learn trust options with
        ``sklearn``; an import generates its own entry, so ``file``/``function`` stay default."""
        if (self.model_format is None) != (self.model_path is None):
            raise InvalidInput(
                f"model_format={self.model_format!r} and model_path={self.model_path!r}: give "
                "both (an import) or neither (the project's own predict function)",
                argument="model_path",
            )
        if self.model_format != "sklearn" and (self.trust_pickle or self.trusted_types):
            raise InvalidInput(
                f"trust_pickle={self.trust_pickle!r}, trusted_types={list(self.trusted_types)!r} "
                f"with model_format={self.model_format!r}: accepted with 'sklearn' only "
                "(--sklearn FILE)",
                argument="trust_pickle",
            )
        if self.model_format is not None and (
            self.file != "predict.py" or self.function != "predict"
        ):
            raise InvalidInput(
                f"file={self.file!r}, function={self.function!r} with model_format="
                f"{self.model_format!r}: an import generates the function it serves; accepted: "
                "no --file/--function with --mlflow, --onnx or --sklearn",
                argument="file",
            )
        for name in self.trusted_types:
            check_text("trusted_types", name, max_len=300)
        return self

    @model_validator(mode="after")
    def _secrets_not_in_env(self) -> DeploySpec:
        """A variable comes from ``env`` or from ``secrets``, never both."""
        check_secrets_not_in_env(self.secrets, self.env)
        return self

    @model_validator(mode="after")
    def _one_source(self) -> DeploySpec:
        if (self.project is None) == (self.upload is None):
            raise InvalidInput(
                f"project={self.project!r} and upload={self.upload!r}: give exactly one, the "
                "id of an upload of the folder (what the CLI sends) or, for server "
                "administrators, a folder on the server's machine",
                argument="upload",
            )
        return self

    @property
    def memory_bytes(self) -> int | None:
        """``memory`` in bytes (``512M``, ``2G`` or a number); InvalidInput naming it."""
        return None if self.memory is None else parse_size_bytes(str(self.memory), "memory")


class BuildSpec(Spec):
    """A finished build as the registry records it (``Registry.add_build(model, spec)``): the
    snapshot's ``digest``, the ``file`` and ``function`` (and ``batch_function``) it serves, the
    ``python`` of its environment (``env_key``), whether it is ``ok`` (else its ``error``), its
    log, its smoke-test ``example`` (stored as JSON) and ``requirements``. ``crn`` is the
    builder's build CRN (None: the registry mints one), ``created_ms`` None: now."""

    digest: str
    file: str
    function: str
    python: str
    env_key: str
    ok: bool
    error: str | None = None
    log_path: str | None = None
    batch_function: str | None = None
    example: Any = None
    requirements: str | None = None
    crn: str | None = None
    created_ms: int | None = None
    source: dict[str, Any] | None = None  # where an imported build came from (builds.source)

    @field_validator("digest", "env_key", mode="before")
    @classmethod
    def _short_text(cls, value: Any, info: ValidationInfo) -> str:
        text: str = check_text(str(info.field_name), value, max_len=200)
        return text

    @field_validator("python", mode="before")
    @classmethod
    def _python(cls, value: Any) -> str:
        text: str = check_text("python", value, max_len=4096)
        return text

    @field_validator("file", mode="before")
    @classmethod
    def _file(cls, value: Any) -> str:
        file = check_relative_path("file", value)
        if file is None:
            raise InvalidInput("file=None is not accepted; expected the path of the model's file")
        return file

    @field_validator("requirements", mode="before")
    @classmethod
    def _requirements(cls, value: Any) -> str | None:
        return check_relative_path("requirements", value)

    @field_validator("function", "batch_function", mode="before")
    @classmethod
    def _function(cls, value: Any, info: ValidationInfo) -> str | None:
        optional = info.field_name == "batch_function"
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.isidentifier():
            extra = ", or None" if optional else ""
            raise InvalidInput(
                f"{info.field_name}={value!r} is not a Python function name; expected an "
                f"identifier such as 'predict'{extra}",
                argument=info.field_name,
            )
        return value

    @field_validator("ok", mode="before")
    @classmethod
    def _ok(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise InvalidInput(f"ok={value!r} is not accepted; expected True or False")
        return value

    @field_validator("error", mode="before")
    @classmethod
    def _error(cls, value: Any) -> str | None:
        text: str | None = check_text("error", value, max_len=100_000, optional=True)
        return text

    @field_validator("log_path", mode="before")
    @classmethod
    def _log_path(cls, value: Any) -> str | None:
        text: str | None = check_text("log_path", value, max_len=4096, optional=True)
        return text

    @field_validator("example", mode="before")
    @classmethod
    def _example(cls, value: Any) -> Any:
        if value is not None:
            encode_json("example", value)  # refuses what cannot be stored, naming it
        return value

    @field_validator("crn", mode="before")
    @classmethod
    def _crn(cls, value: Any) -> str | None:
        return None if value is None else check_crn(value, "build", "crn")

    @field_validator("created_ms", mode="before")
    @classmethod
    def _created(cls, value: Any) -> int | None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise InvalidInput(
                f"created_ms={value!r} is not accepted; expected epoch milliseconds "
                "(an integer >= 0) or None for now"
            )
        return value

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> dict[str, Any] | None:
        if value is not None:
            if not isinstance(value, dict):
                raise InvalidInput(
                    f"source={value!r:.200} is not accepted; expected a JSON object or None"
                )
            encode_json("source", value)
        source: dict[str, Any] | None = value
        return source

    @property
    def source_json(self) -> str | None:
        """``source`` as the JSON text stored (None: a build of the project's own function)."""
        return None if self.source is None else encode_json("source", self.source)

    @property
    def example_json(self) -> str | None:
        """``example`` as the JSON text stored (None: no example)."""
        return None if self.example is None else encode_json("example", self.example)
