"""Experiments as the API and the dashboard show them (``GET /api/v1/experiments``,
``/experiments/{run}``, ``/experiments/compare`` and the dashboard's experiments page), and the
experiments a caller may see: those of the projects the caller has a role in, none for a key
limited to one model (an experiment belongs to no model).

The JSON is camelCase, like the rest of the experiments API: ``experiment_json`` for a run,
``file_json`` for a file it kept; ``metricHistory`` (every value with its time) only when asked,
for one run or a comparison, since a list of runs would carry it many times over.

Blocking (registry reads): routes call these on a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.registry import Experiment, Registry, RunFile
from modelyard.web.access import Caller, not_found

__all__ = [
    "MAX_COMPARED",
    "compare_json",
    "experiment_json",
    "file_json",
    "project_names",
    "visible_experiment",
    "visible_experiments",
]

MAX_COMPARED = 50


def file_json(file: RunFile) -> dict[str, Any]:
    """A file a run tracked (``RunFile``): kept with its size and digest, or failed and why."""
    return {
        "path": file.path,
        "state": file.state,
        "size": file.size,
        "sha256": file.sha256,
        "error": file.error,
        "trackedMs": file.tracked_ms,
        "keptMs": file.kept_ms,
    }


def experiment_json(
    experiment: Experiment, projects: Mapping[str, str] | None = None, history: bool = False
) -> dict[str, Any]:
    """An experiment (``registry.experiments``' record) as the API shows it; ``projects`` maps
    project CRNs to ``owner/name`` (a CRN not in it is shown as is); ``history`` adds
    ``metricHistory``: every value of each metric, ``key -> [[trackedMs, value], ...]``."""
    run, job = experiment.run, experiment.job
    resources = dict(experiment.resources or {})
    body: dict[str, Any] = {
        "id": run.id,
        "uuid": run.id.rsplit("/", 1)[-1],
        "name": experiment.label,
        "project": (projects or {}).get(job.project_crn or "", job.project_crn),
        "script": job.script,
        "args": list(job.args),
        "state": run.state.value,
        "exitCode": run.exit_code,
        "queuedMs": run.queued_ms,
        "startedMs": run.started_ms,
        "endedMs": run.ended_ms,
        "durationMs": run.duration_ms,
        "codeDigest": experiment.code_digest,
        "requirements": job.requirements,
        "resources": {key: resources.get(key) for key in ("cpus", "memory", "gpus", "accelerator")},
        "metrics": dict(experiment.metrics),
        "files": [file_json(f) for f in experiment.files],
        "job": job.name,
    }
    if history:
        body["metricHistory"] = {
            key: [[when, value] for when, value in values]
            for key, values in experiment.history.items()
        }
    return body


def project_names(registry: Registry) -> dict[str, str]:
    """CRN -> ``owner/name`` of every project (for ``experiment_json``)."""
    return {p.crn: p.full_name for p in registry.people.list_projects()}


def _sees(caller: Caller, project_crn: str | None) -> bool:
    if caller.model_scope is not None:
        return False
    visible = caller.visible_projects()
    return visible is None or project_crn in visible


def visible_experiments(
    registry: Registry, caller: Caller, project_crn: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The experiments ``caller`` may see, newest first, at most ``limit``, of ``project_crn``
    only when given. A caller with roles in some projects gets the newest of those (read per
    project, so runs of projects they cannot see never take their places)."""
    if caller.model_scope is not None:
        return []
    visible = caller.visible_projects()
    if visible is None or project_crn is not None:
        found = registry.experiments.list(project_crn, limit)
    else:
        found = [e for crn in sorted(visible) for e in registry.experiments.list(crn, limit)]
        found.sort(key=lambda e: e.run.queued_ms, reverse=True)
    names = project_names(registry)
    shown = [e for e in found if _sees(caller, e.job.project_crn)][:limit]
    return [experiment_json(e, names) for e in shown]


def visible_experiment(registry: Registry, caller: Caller, ref: str) -> Experiment:
    """The experiment ``ref`` (run CRN, uuid or prefix) if ``caller`` sees it; one NotFound for
    an unknown run and for one in a project the caller has no role in."""
    experiment = registry.experiments.get(ref)
    if not _sees(caller, experiment.job.project_crn):
        raise not_found("experiment", ref)
    return experiment


def compare_json(registry: Registry, caller: Caller, refs: Sequence[str]) -> dict[str, Any]:
    """``refs`` side by side (``GET /api/v1/experiments/compare``): each run with its metric
    history, and the sorted union of their metric keys. One to ``MAX_COMPARED`` distinct runs."""
    wanted = _distinct(r.strip() for r in refs if r.strip())
    if not 1 <= len(wanted) <= MAX_COMPARED:
        raise InvalidInput(
            f"runs={','.join(wanted)!r:.200} names {len(wanted)} runs; accepted: 1 to "
            f"{MAX_COMPARED} run uuids, prefixes or ids, separated by commas",
            argument="runs",
        )
    found = registry.experiments.compare(wanted)
    for ref, experiment in zip(wanted, found, strict=True):
        if not _sees(caller, experiment.job.project_crn):
            raise not_found("experiment", ref)
    names = project_names(registry)
    runs = [experiment_json(e, names, history=True) for e in found]
    keys = sorted({key for run in runs for key in run["metricHistory"]})
    return {"runs": runs, "metrics": keys}


def _distinct(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
