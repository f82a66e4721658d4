"""From registry records to the runtime's ``ReplicaSpec``: argv, environment, ids and limits.

Kept apart from the controller so the exact command line a replica gets (the contract in
``docs/replica.md``) is written in one place and can be read without the rollout around it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from modelyard.builds.builder import builds_root
from modelyard.registry import Build, Deployment, Model, ModelSettings
from modelyard.runtime import ReplicaSpec, check_name
from modelyard.serving.controller.batch_choice import BatchChoice, batch_choice
from modelyard.serving.replica import DEFAULT_CONCURRENCY
from modelyard.store.base import Identity

__all__ = [
    "HEALTH_PATH",
    "capacity",
    "deployment_id",
    "identity",
    "new_replica_id",
    "replica_spec",
    "served_batch",
    "snapshot_path",
]

HEALTH_PATH = "/healthz"


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


def replica_spec(
    model: Model,
    build: Build,
    deployment: Deployment,
    *,
    home: str | os.PathLike[str],
    replica_id: str,
    port: int,
    python: str | None = None,
    startup_timeout_s: float = 120.0,
) -> ReplicaSpec:
    """The spec of one replica of ``deployment`` listening on ``127.0.0.1:port``."""
    settings = model.settings
    snapshot = snapshot_path(build, home)
    argv = [python or build.python, "-m", "modelyard.serving.replica"]
    argv += ["--snapshot", str(snapshot), "--file", build.file, "--function", build.function]
    argv += ["--port", str(port), "--replica-id", replica_id]
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
    )
