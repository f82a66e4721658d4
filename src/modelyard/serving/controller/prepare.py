"""What a build needs on this server before its replicas start: its snapshot folder and its
Python environment, fetched and prepared when this server lacks them.

The build ran on one server (its snapshot folder and environment are in that server's home);
the registry, shared by every server on one database, holds the build record and, in
``registry.snapshots``, the snapshot's archive. ``Preparer.publish`` stores the archive right
after a build (and for a folder found on disk whose archive is missing, such as builds made
before archives were stored); ``Preparer.prepare`` unpacks the archive where the folder is
missing and makes (or reuses) the environment for the build's requirements, then returns the
build with the interpreter this server runs it on.

While that takes time (a large archive, a ``pip install``), ``preparing`` says so per model:
the dashboard shows the model as ``preparing`` and the model's status (``GET
/api/v1/models/{name}``) has ``preparing: "fetching the snapshot ..."``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import threading
from pathlib import Path

from modelyard.builds.archive import ARCHIVE_FORMAT, pack_snapshot, unpack_snapshot
from modelyard.builds.builder import builds_root
from modelyard.builds.environments import EnvironmentFailed, ensure_environment
from modelyard.errors import ModelyardError, NotFound, Unavailable
from modelyard.registry import Build, Registry
from modelyard.serving.controller.replica_specs import snapshot_path

__all__ = ["PrepareFailed", "Preparer"]

log = logging.getLogger("modelyard.controller")

_LOG_TAIL_CHARS = 4000


class PrepareFailed(Unavailable):
    """This server could not get a build's snapshot or environment ready; the message says
    which and why (``details["log_tail"]``: the preparation log's end, when there is one)."""


class Preparer:
    """Snapshots and environments of builds under ``home``, from ``registry`` when missing."""

    def __init__(self, home: Path, registry: Registry) -> None:
        self.home = home
        self.registry = registry
        #: model name -> what this server is preparing for it now (shown on the dashboard)
        self.preparing: dict[str, str] = {}
        self._published: set[str] = set()
        self._python: dict[str, str] = {}  # build CRN -> interpreter prepared here
        self._lock = threading.Lock()

    # -- storing -------------------------------------------------------------------------------
    async def publish(self, built: Build) -> None:
        """Store ``built``'s snapshot archive in the database unless it is there already."""
        if built.digest in self._published:
            return
        await asyncio.to_thread(self._publish, built)

    def _publish(self, built: Build) -> None:
        digest = built.digest
        if self.registry.snapshots.get(digest) is None:
            folder = snapshot_path(built, self.home)
            stored = self.registry.snapshots.put(
                digest, pack_snapshot(folder, digest), ARCHIVE_FORMAT
            )
            log.info(
                "stored the archive of snapshot %s (%d bytes) for other servers",
                digest[:12],
                stored.archive_bytes,
            )
        with self._lock:
            self._published.add(digest)

    def ready(self, built: Build) -> None:
        """``built`` was just built here: its folder and ``built.python`` are ready, and its
        archive stored (``publish`` before)."""
        self._python[built.crn] = built.python
        with self._lock:
            self._published.add(built.digest)

    # -- preparing -----------------------------------------------------------------------------
    async def prepare(self, model: str, built: Build) -> Build:
        """``built`` ready to run here: its snapshot folder present, its environment made; the
        returned build names this server's interpreter for it. PrepareFailed says what is
        missing."""
        folder = snapshot_path(built, self.home)
        python = self._python.get(built.crn)
        if python is not None and folder.is_dir():
            return dataclasses.replace(built, python=python)
        try:
            if not folder.is_dir():
                self.preparing[model] = f"fetching the snapshot {built.digest[:12]}"
                await asyncio.to_thread(self._fetch, built, folder)
            elif built.digest not in self._published:
                # A folder from before archives were stored: store it for the other servers.
                try:
                    await self.publish(built)
                except ModelyardError as exc:
                    log.warning("could not store snapshot %s: %s", built.digest[:12], exc)
            if built.requirements is not None:
                self.preparing[model] = "preparing the environment"
            python = await asyncio.to_thread(self._environment, built, folder)
        finally:
            self.preparing.pop(model, None)
        self._python[built.crn] = python
        return dataclasses.replace(built, python=python)

    def _fetch(self, built: Build, folder: Path) -> None:
        try:
            chunks = self.registry.snapshots.read(built.digest)
        except NotFound as exc:
            raise PrepareFailed(
                f"build {built.crn} runs snapshot {built.digest}, which is neither in "
                f"{str(folder)!r} on this server nor stored in the database (built before "
                "snapshots were shared, by a server that has not run it since); deploy the "
                "model again through any server",
                build_crn=built.crn,
                digest=built.digest,
            ) from exc
        try:
            unpack_snapshot(chunks, built.digest, folder.parent)
        except ModelyardError as exc:
            raise PrepareFailed(
                f"the snapshot {built.digest} of build {built.crn} could not be fetched from "
                f"the database: {exc.message}",
                build_crn=built.crn,
                digest=built.digest,
            ) from exc
        with self._lock:
            self._published.add(built.digest)
        log.info("fetched snapshot %s of build %s from the database", built.digest[:12], built.crn)

    def _environment(self, built: Build, folder: Path) -> str:
        """The interpreter for ``built`` here: the base environment's (the one running
        Modelyard) without requirements, else the environment for its requirements file."""
        if built.requirements is None:
            return sys.executable
        logs = builds_root(self.home) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{built.crn.rsplit('/', 1)[-1]}.prepare.log"
        try:
            with open(log_path, "a", encoding="utf-8") as out:
                env = ensure_environment(
                    folder / built.requirements, builds_root(self.home) / "envs", out, cwd=folder
                )
        except (EnvironmentFailed, ModelyardError) as exc:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:]
            raise PrepareFailed(
                f"the environment of build {built.crn} could not be prepared on this server: "
                f"{exc.message}; {log_path} has the whole log",
                build_crn=built.crn,
                log_tail=tail,
            ) from exc
        return str(env.python)
