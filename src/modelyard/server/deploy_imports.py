"""A deploy that imports (``--mlflow``/``--onnx``/``--sklearn``) or builds from an experiment
run's files (``--from-run``): the folder staged before the build (``builds.imported.stage``).

The run must be one the caller may read (viewer in its project: 404 otherwise, as for any object
they may not see); only its kept files go in, and a run that kept none is refused, naming it.
Blocking (registry reads, file copies): call on a worker thread.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.builds.imported import ImportRequest, Staged, stage
from modelyard.errors import InvalidInput
from modelyard.specs.deploy import DeploySpec
from modelyard.web.access import Caller, Right
from modelyard.web.services import Services

__all__ = ["needs_staging", "stage_deploy"]


def needs_staging(body: DeploySpec) -> bool:
    """Whether ``body`` is an import or builds from a run (else the folder is built as is)."""
    return body.model_format is not None or body.from_run is not None


def stage_deploy(services: Services, caller: Caller, body: DeploySpec, folder: Path) -> Staged:
    """``folder`` staged for ``body``: the run's kept files in, the import's entry written."""
    run_crn = None
    files: dict[str, bytes] = {}
    if body.from_run is not None:
        run_crn, files = _run_files(services, caller, body.from_run)
    request = ImportRequest(
        model_format=body.model_format,
        model_path=body.model_path,
        trust_pickle=body.trust_pickle,
        trusted_types=tuple(body.trusted_types),
        example=body.example,
        run=run_crn,
        run_files=files,
    )
    return stage(folder, services.controller.home, request)


def _run_files(services: Services, caller: Caller, ref: str) -> tuple[str, dict[str, bytes]]:
    experiments = services.registry.experiments
    found = experiments.get(ref)  # NotFound naming the run
    caller.check(Right.READ, found.job.project_crn, f"run {ref!r}")
    kept = [f for f in experiments.files(found.run.id) if f.state == "kept"]
    if not kept:
        states = ", ".join(f"{f.path} ({f.state})" for f in experiments.files(found.run.id))
        raise InvalidInput(
            f"run {ref!r} kept no files to build from (its files: {states or 'none'}); "
            "accepted: a run whose script kept its outputs with track_file(path)",
            argument="from_run",
        )
    return found.run.id, {f.path: experiments.file_data(found.run.id, f.path) for f in kept}
