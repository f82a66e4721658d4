"""From registry records to the runtime's ``ReplicaSpec``: argv, environment, ids and limits.

Kept apart from the controller so the exact command line a replica gets (the contract in
``docs/replica.md``) is written in one place and can be read without the rollout around it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
import tempfile
from pathlib import Path

from modelyard.builds.builder import builds_root
from modelyard.errors import InvalidInput
from modelyard.registry import Build, Deployment, Model, ModelSettings
from modelyard.runtime import ReplicaSpec, check_name
from modelyard.serving.controller.batch_choice import BatchChoice, batch_choice
from modelyard.serving.replica import DEFAULT_CONCURRENCY
from modelyard.store.base import Identity

__all__ = [
    "HEALTH_PATH",
    "REQUIREMENTS_ENV",
    "capacity",
    "deployment_id",
    "identity",
    "new_replica_id",
    "replica_spec",
    "served_batch",
    "snapshot_path",
    "socket_folder",
    "socket_path",
]

HEALTH_PATH = "/healthz"
# sun_path holds 108 bytes on Linux, 104 on macOS; keep the path and its NUL below both.
_MAX_SOCKET_PATH = 103
_SOCKET_SUFFIX = ".sock"
# ``new_replica_id`` makes ids of about 18 characters (``3f0c2a9e-r2-a41b07``); leave room.
_LONGEST_ID = 32


def _private_folder(folder: Path, *, fix_mode: bool) -> Path:
    """Create ``folder`` (mode 0700) or check an existing one: a real folder (no symlink),
    owned by this user and closed to others. ``fix_mode``: tighten the mode of our own folder
    instead of refusing it (the home's ``run/replicas``; never a shared temporary folder)."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700, parents=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise InvalidInput(
            f"the replica socket folder {str(folder)!r} is not a folder owned by uid "
            f"{os.getuid()} (a symlink or another user's); remove it, replicas listen there"
        )
    if info.st_mode & 0o077:
        if not fix_mode:
            raise InvalidInput(
                f"the replica socket folder {str(folder)!r} has mode "
                f"{stat.S_IMODE(info.st_mode):o}; it must be 0700 (only this user may enter): "
                "chmod 700 it or remove it"
            )
        os.chmod(folder, 0o700)
    return folder


def socket_folder(home: str | os.PathLike[str]) -> Path:
    """The folder replicas' Unix sockets live in, created mode 0700: ``<home>/run/replicas``.

    A socket path must fit ``sun_path`` (103 bytes here); when the home is too deep for that,
    ``modelyard-<uid>-<12 hex of the home>`` is used instead, under the first of
    ``$XDG_RUNTIME_DIR``, the temporary folder (``$TMPDIR``) and ``/tmp`` where it fits, created
    0700 and refused if it exists open to others or owned by another user.
    """
    folder = Path(os.path.abspath(home)) / "run" / "replicas"
    if _fits(folder):
        _private_folder(folder.parent, fix_mode=True)
        return _private_folder(folder, fix_mode=True)
    digest = hashlib.sha256(os.fsencode(os.path.abspath(home))).hexdigest()[:12]
    name = f"modelyard-{os.getuid()}-{digest}"
    bases = [os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp"]
    tried = [Path(base) / name for base in bases if base]
    for short in tried:
        if _fits(short):
            return _private_folder(short, fix_mode=False)
    shown = ", ".join(repr(str(path)) for path in [folder, *tried])
    raise InvalidInput(
        f"no replica socket path fits in {_MAX_SOCKET_PATH} bytes under {shown}; use a "
        "shorter home or set XDG_RUNTIME_DIR to a short folder"
    )


def _fits(folder: Path) -> bool:
    """Whether sockets of replica ids up to ``_LONGEST_ID`` characters fit in ``folder``."""
    return len(os.fsencode(folder)) + 1 + _LONGEST_ID + len(_SOCKET_SUFFIX) <= _MAX_SOCKET_PATH


def socket_path(home: str | os.PathLike[str], replica_id: str) -> Path:
    """The Unix socket replica ``replica_id`` listens on (its folder created 0700)."""
    check_name(replica_id, "replica_id")
    if len(replica_id) > _LONGEST_ID:
        raise InvalidInput(
            f"replica_id={replica_id!r} is {len(replica_id)} characters; a replica's socket "
            f"name allows at most {_LONGEST_ID}"
        )
    return socket_folder(home) / f"{replica_id}{_SOCKET_SUFFIX}"


def deployment_id(deployment_crn: str) -> str:
    """The runtime's name for a deployment: the uuid part of its CRN (a CRN holds ``/``)."""
    return check_name(deployment_crn.rsplit("/", 1)[-1], "deployment_id")


def new_replica_id(deployment_crn: str, ordinal: int) -> str:
    """``<first 8 of the deployment uuid>-r<n>-<6 random hex>``: short, safe as a file name,
    tells at a glance which deployment a replica belongs to, and never repeats (a restore or a
    scale-up after a scale-down would otherwise reuse ``r<n>``)."""
    return check_name(
        f"{deployment_id(deployment_crn)[:8]}-r{ordinal}-{secrets.token_hex(3)}", "replica_id"
    )


def identity(deployment: Deployment) -> Identity:
    return Identity(deployment.model_crn, deployment.build_crn, deployment.crn)


def snapshot_path(build: Build, home: str | os.PathLike[str]) -> Path:
    """Where the build's snapshot lives (content-addressed by its digest, see docs/builds.md)."""
    return builds_root(home) / "snapshots" / build.digest


def served_batch(
    build: Build, settings: ModelSettings, home: str | os.PathLike[str]
) -> BatchChoice:
    """The batch function replicas of ``build`` will serve, read from the snapshot's syntax tree
    with the same setting ``replica_spec`` passes as ``--batch-function``."""
    return batch_choice(
        snapshot_path(build, home) / build.file,
        build.function,
        build.batch_function or settings.batch_function,
    )


def capacity(settings: ModelSettings, batch_function: str | None = None) -> int:
    """Requests the gateway sends one replica at once (``ReplicaEndpoint.capacity``).

    Without a batch function: the replica's ``--concurrency``. Each request is one call of user
    code, so anything beyond would only wait in the replica's semaphore, out of sight of the
    gateway's bounded queue, its ``Retry-After`` estimate and its least-busy choice.

    With one (``batch_function``, from ``served_batch``): ``concurrency x max_batch_size``. A
    batch holds one slot of the replica's semaphore for the whole call (``replica/batching.py``),
    so a replica works on up to ``concurrency`` batches of up to ``max_batch_size`` items at
    once; that many requests is what it can serve without queueing past its next round of
    calls. Capped at ``concurrency``, no batch could hold more than ``concurrency`` items and
    every request would wait the full ``max_batch_wait_ms`` for one more (benchmarks/README.md:
    540 req/s at c=64 against 2,259 with the cap lifted). ``max_batch_size`` alone would fill
    one batch but leave the other ``concurrency - 1`` slots idle, and the replica could not
    gather the next batch while one runs: the gateway would send nothing until its answers
    came back.
    """
    concurrency = settings.concurrency if settings.concurrency is not None else DEFAULT_CONCURRENCY
    if batch_function is None:
        return concurrency
    return concurrency * settings.max_batch_size


# The build's requirements file (inside the snapshot), for runtimes that install them remotely.
REQUIREMENTS_ENV = "MODELYARD_BUILD_REQUIREMENTS"


def replica_spec(
    model: Model,
    build: Build,
    deployment: Deployment,
    *,
    home: str | os.PathLike[str],
    replica_id: str,
    port: int | None = None,
    python: str | None = None,
    startup_timeout_s: float = 120.0,
) -> ReplicaSpec:
    """The spec of one replica of ``deployment``: listening on its Unix socket
    (``socket_path``), or on ``127.0.0.1:port`` when a ``port`` is given (tests)."""
    settings = model.settings
    snapshot = snapshot_path(build, home)
    socket = None if port is not None else str(socket_path(home, replica_id))
    argv = [python or build.python, "-m", "modelyard.serving.replica"]
    argv += ["--snapshot", str(snapshot), "--file", build.file, "--function", build.function]
    argv += ["--port", str(port)] if socket is None else ["--socket", socket]
    argv += ["--replica-id", replica_id]
    batch_function = build.batch_function or settings.batch_function
    if batch_function is not None:
        argv += ["--batch-function", batch_function]
    if settings.concurrency is not None:  # None: the replica's own measured default
        argv += ["--concurrency", str(settings.concurrency)]
    argv += ["--max-batch-size", str(settings.max_batch_size)]
    argv += ["--max-batch-wait-ms", repr(settings.max_batch_wait_ms)]
    argv += ["--max-body-bytes", str(settings.max_body_bytes)]
    if settings.track_io:
        argv.append("--track-io")
    if settings.debug:
        argv.append("--debug")
    env = {
        **deployment.env,
        "MODELYARD_MODEL_CRN": deployment.model_crn,
        "MODELYARD_BUILD_CRN": deployment.build_crn,
        "MODELYARD_DEPLOYMENT_CRN": deployment.crn,
    }
    if build.requirements is not None:  # the Ray runtime installs these on its nodes (docs/ray.md)
        env[REQUIREMENTS_ENV] = build.requirements
    return ReplicaSpec(
        deployment_id=deployment_id(deployment.crn),
        replica_id=replica_id,
        argv=argv,
        cwd=snapshot,
        env=env,
        port=port,
        health_path=HEALTH_PATH,
        memory_limit_bytes=deployment.memory_bytes,
        cpus=deployment.cpus,
        startup_timeout_s=startup_timeout_s,
        socket=socket,
        gpus=settings.gpus,
        accelerator=settings.accelerator,
    )
