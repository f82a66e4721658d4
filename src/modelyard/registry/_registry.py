"""``Registry``: the one object other parts use to read and change registry metadata.

It keeps no state of its own beyond two lookup caches; everything lives in the store's database,
so any number of ``Registry`` objects (threads, processes, servers on one PostgreSQL) agree once
their caches expire (``cache_ttl_s``, 2 s by default).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from modelyard.clock import now_ms
from modelyard.errors import InvalidInput
from modelyard.ids import is_uuid
from modelyard.registry._apikeys import YEAR_MS, ApiKeys
from modelyard.registry._audit import AuditLog
from modelyard.registry._connections import Connections
from modelyard.registry._db import Clock, Db
from modelyard.registry._deployments import UNSET, Builds, Deployments
from modelyard.registry._events import DEFAULT_KEPT, Events
from modelyard.registry._experiments import Experiments
from modelyard.registry._jobs import Job, Jobs
from modelyard.registry._labels import LabelImports
from modelyard.registry._models import Models
from modelyard.registry._monitors import MonitorRecords
from modelyard.registry._people import People
from modelyard.registry._prefix import SHOWN, check_prefix, choose
from modelyard.registry._records import ApiKey, Build, Deployment, Model, ReplicaEvent
from modelyard.registry._run_metrics import RunMetric, RunMetrics
from modelyard.registry._runs import Run, Runs, SlotClaim
from modelyard.registry._secrets import Secrets
from modelyard.registry._settings import ModelSettings
from modelyard.registry._snapshots import SnapshotArchives
from modelyard.registry._uploads import Uploads
from modelyard.specs.deploy import BuildSpec
from modelyard.specs.job import JobSpec
from modelyard.store.base import MetricsStore
from modelyard.ttlcache import DEFAULT_TTL_S, TTLCache

__all__ = ["Registry"]


class Registry:
    """Models, builds, deployments, API keys, replica events, jobs and runs in ``store``'s
    database, the monitors' state (``registry.monitors``, a ``MonitorRecords``), and users,
    teams, projects and roles (``registry.people``, a ``People``). Every model and job belongs
    to a project; API keys belong to a user (run keys excepted).

    ``store`` is an SQL store (SQLite file or ``:memory:``, PostgreSQL); the registry's tables
    come with the store's schema (migration 0002). ``clock`` (epoch milliseconds) decides key
    expiry and timestamps; ``monotonic`` (seconds) ages the key caches; both are injectable for
    tests. ``events_kept`` bounds the replica events kept per deployment.

    >>> from modelyard.store.sqlite import SQLiteStore
    >>> registry = Registry(SQLiteStore(":memory:"))
    >>> model, access_key = registry.create_model("churn")
    >>> registry.model_by_access_key(access_key).name
    'churn'
    """

    def __init__(
        self,
        store: MetricsStore,
        *,
        clock: Clock | None = None,
        cache_ttl_s: float = DEFAULT_TTL_S,
        monotonic: Callable[[], float] = time.monotonic,
        events_kept: int = DEFAULT_KEPT,
    ) -> None:
        if (
            isinstance(cache_ttl_s, bool)
            or not isinstance(cache_ttl_s, int | float)
            or not 0 <= cache_ttl_s <= 3600
        ):
            raise InvalidInput(
                f"cache_ttl_s={cache_ttl_s!r} is not accepted; expected seconds from 0 (no "
                f"caching) to 3600, default {DEFAULT_TTL_S}"
            )
        self.store = store
        db = Db(store)
        now = clock or now_ms
        model_cache = TTLCache[Model](cache_ttl_s, monotonic)
        key_cache = TTLCache[ApiKey](cache_ttl_s, monotonic)

        def moved() -> None:  # the bootstrap gave old rows a project or a user
            model_cache.clear()
            key_cache.clear()

        #: users, teams, projects, collaborators and roles
        self.people = People(
            db,
            now,
            cache_ttl_s=cache_ttl_s,
            monotonic=monotonic,
            moved=moved,
        )
        self._models = Models(db, now, model_cache)
        self._builds = Builds(db, now)
        self._deployments = Deployments(db, now)
        self._keys = ApiKeys(db, now, key_cache)
        self._events = Events(db, now, events_kept)
        self._jobs = Jobs(db, now)
        self._runs = Runs(db, now)
        self._run_metrics = RunMetrics(db, now)
        #: experiment runs (one-off jobs of kind 'experiment') and the files runs keep
        self.experiments = Experiments(db, now, self._jobs, self._runs)
        #: monitor results, label marks, alert episodes and reference samples
        self.monitors = MonitorRecords(db, now)
        #: who changed what, when, from where (append-only; see registry/_audit.py)
        self.audit = AuditLog(db, now)
        #: build snapshot archives by digest, shared by every server on the database
        self.snapshots = SnapshotArchives(db, now)
        #: project secrets, encrypted; the server hands over the key (``secrets.configure``)
        self.secrets = Secrets(db, now)
        #: uploaded project folders: blobs by sha256 and manifests (deploy from a laptop)
        self.uploads = Uploads(db, now)
        #: a project's connections to its data (options in the clear, credentials as secrets)
        self.connections = Connections(db, now)
        #: monitors' label imports: each ``labels:`` source's watermark and its reads
        self.labels = LabelImports(db, now)

    # -- models ---------------------------------------------------------------------------------
    def create_model(
        self,
        name: str,
        settings: ModelSettings | Mapping[str, Any] | None = None,
        *,
        project_crn: str | None = None,
    ) -> tuple[Model, str]:
        """Register a model in a project (``project_crn``: any project ref; None: the default
        project); returns it and its access key (shown once, stored as a hash).

        Conflict if the name is taken (names are unique on the server: gateway URLs use them);
        InvalidInput if it breaks ``^[a-z0-9][a-z0-9-]{0,62}$``; NotFound for an unknown project.
        """
        return self._models.create(name, settings, project_crn)

    def get_model(self, name_or_crn: str) -> Model:
        return self._models.get(name_or_crn)

    def list_models(self, project_crn: str | None = None) -> list[Model]:
        """All models (of one project, by CRN), by name."""
        return self._models.list(project_crn)

    def update_model(self, name: str, **settings: Any) -> Model:
        """Change some settings (``update_model('churn', concurrency=8)``)."""
        return self._models.update(name, settings)

    def delete_model(self, name: str) -> None:
        """Remove a model with its builds, deployments, replica events and the snapshot archives
        no other model's build shares (its metrics stay in the store). Conflict while a
        deployment is ``active`` or ``deploying``: stop it first."""
        self._models.delete(name)

    def rotate_access_key(self, name: str) -> str:
        """A new access key for the model; the old one stops working (at once in this process,
        within ``cache_ttl_s`` in others)."""
        return self._models.rotate(name)

    def model_by_access_key(self, key: str) -> Model:
        """The model an access key selects; Unauthorized if none (the key is not echoed)."""
        return self._models.by_access_key(key)

    def cached_model_by_access_key(self, key: str) -> Model | None:
        """``model_by_access_key(key)`` answered from the cache alone, or None if that needs
        the database (so a caller on an event loop can go to a thread only then)."""
        return self._models.cached_by_access_key(key)

    # -- builds ---------------------------------------------------------------------------------
    def add_build(  # noqa: PLR0913 - keyword-only, one per column of a build record (the builder's)
        self,
        model: str,
        *,
        digest: str,
        file: str,
        function: str,
        python: str | os.PathLike[str],
        env_key: str,
        ok: bool,
        error: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
        batch_function: str | None = None,
        example: Any = None,
        requirements: str | None = None,
        crn: str | None = None,
        created_ms: int | None = None,
        source: dict[str, Any] | None = None,
    ) -> Build:
        """Record a build of ``model`` (name or CRN), its fields checked by ``BuildSpec``.
        ``crn`` is the builder's build CRN (a new one is minted if omitted); Conflict if that
        CRN is already recorded."""
        spec = BuildSpec(
            digest=digest,
            file=file,
            function=function,
            python=os.fspath(python) if isinstance(python, os.PathLike) else python,
            env_key=env_key,
            ok=ok,
            error=error,
            log_path=os.fspath(log_path) if isinstance(log_path, os.PathLike) else log_path,
            batch_function=batch_function,
            example=example,
            requirements=requirements,
            crn=crn,
            created_ms=created_ms,
            source=source,
        )
        return self._builds.add(model, spec)

    def get_build(self, crn: str) -> Build:
        return self._builds.get(crn)

    def resolve_build(self, text: str, model: str | None = None) -> str:
        """The CRN of the build ``text`` names (of ``model`` if given): its CRN, its uuid, or an
        unambiguous prefix of its uuid (4 characters or more); errors as ``resolve_run``."""
        head = "crn:modelyard:build/"
        if is_uuid(text.removeprefix(head)):
            return head + text.removeprefix(head)
        prefix = check_prefix(text, "build", "--build 3f2a9c")
        found = self._builds.ids_with_prefix(prefix, model, SHOWN + 1)
        where = f"model {model!r}'s builds" if model is not None else "the builds"
        return choose(text, "build", found, f"'modelyard models builds MODEL' lists {where}")

    def list_builds(self, model: str) -> list[Build]:
        """The model's builds, newest first."""
        return self._builds.list(model)

    # -- deployments ----------------------------------------------------------------------------
    def add_deployment(
        self,
        model: str,
        build: str,
        replicas: int = 1,
        env: dict[str, str] | None = None,
        memory_bytes: int | None = None,
        cpus: float | None = None,
        secrets: Iterable[str] | None = None,
    ) -> Deployment:
        """A new deployment of a successful build of ``model``, in state ``deploying``; its
        identity is registered with the metrics store. ``secrets``: names of project secrets
        its replicas get as environment variables (read when each replica starts)."""
        return self._deployments.add(model, build, replicas, env, memory_bytes, cpus, secrets)

    def get_deployment(self, crn: str) -> Deployment:
        return self._deployments.get(crn)

    def list_deployments(
        self, model: str | None = None, states: Iterable[str] | None = None
    ) -> list[Deployment]:
        """Deployments (of one model, in some states), newest first."""
        return self._deployments.list(model, states)

    def active_deployment(self, model: str) -> Deployment | None:
        """The model's active deployment, or None when nothing serves it."""
        return self._deployments.active(model)

    def set_deployment_state(self, crn: str, state: str) -> Deployment:
        """Move a deployment to ``state``; making one ``active`` marks the model's previously
        active deployment ``replaced`` in the same transaction."""
        return self._deployments.set_state(crn, state)

    def update_deployment(
        self,
        crn: str,
        *,
        replicas: Any = UNSET,
        env: Any = UNSET,
        memory_bytes: Any = UNSET,
        cpus: Any = UNSET,
    ) -> Deployment:
        """Change the given fields only (``memory_bytes=None`` removes the limit)."""
        return self._deployments.update(
            crn, replicas=replicas, env=env, memory_bytes=memory_bytes, cpus=cpus
        )

    # -- API keys -------------------------------------------------------------------------------
    def create_api_key(
        self,
        name: str,
        role: str = "user",
        expires_in_ms: int | None = YEAR_MS,
        scope: str | None = None,
        *,
        user: str | None = None,
        project: str | None = None,
        project_role: str | None = None,
        token: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new API key and its token (shown once). ``expires_in_ms=None`` only for admin.
        ``token``: register this token (minted elsewhere) instead of minting one.

        ``user`` (a name or id) is whose rights the key carries: required for admin and user
        keys once any user exists, never given for run keys; an admin key needs a server admin.
        A user key may be narrowed to ``project`` (any project ref; the user must have a role
        there) and to ``project_role`` (at most the user's own role there). See ``_grants``."""
        return self._keys.create(
            name,
            role,
            expires_in_ms,
            scope,
            user=user,
            project=project,
            project_role=project_role,
            token=token,
        )

    def authenticate(self, token: str) -> ApiKey:
        """The key a token belongs to; Unauthorized saying unknown, revoked or expired."""
        return self._keys.authenticate(token)

    def cached_api_key(self, token: str) -> ApiKey | None:
        """``authenticate(token)`` answered from the cache alone, or None if that needs the
        database (so a caller on an event loop can go to a thread only then)."""
        return self._keys.cached(token)

    def list_api_keys(self, user_id: str | None = None) -> list[ApiKey]:
        """Every key (of one user, by id), revoked and expired ones too, oldest first (no
        hashes, no tokens)."""
        return self._keys.list(user_id)

    def revoke_api_key(self, key_id: str) -> ApiKey:
        return self._keys.revoke(key_id)

    # -- replica events -------------------------------------------------------------------------
    def record_event(
        self,
        deployment_crn: str,
        replica_id: str,
        kind: str,
        details: dict[str, Any] | None = None,
        at_ms: int | None = None,
    ) -> ReplicaEvent:
        return self._events.record(deployment_crn, replica_id, kind, details, at_ms)

    def events(self, deployment_crn: str, limit: int = 100) -> list[ReplicaEvent]:
        """The deployment's newest events first (at most ``events_kept`` are kept)."""
        return self._events.list(deployment_crn, limit)

    # -- jobs (see docs/jobs.md) ----------------------------------------------------------------
    def create_job(
        self, spec: JobSpec, project_crn: str | None = None, *, builtin: bool = False
    ) -> Job:
        """Define the job ``spec`` describes (``modelyard.specs.JobSpec``, which checked its
        fields when it was made) in a project (``project_crn``: any project ref; None: the
        default project). The registry adds what needs the other jobs: ``after`` names an
        existing job of the same project (NotFound, InvalidInput otherwise) and closes no cycle
        (InvalidInput spelling it ``a -> b -> a``); Conflict for a taken name. Nothing is
        written on error.
        """
        return self._jobs.create(spec, builtin, project_crn)

    def get_job(self, name_or_id: str) -> Job:
        return self._jobs.get(name_or_id)

    def list_jobs(self, project_crn: str | None = None) -> list[Job]:
        """All jobs (of one project, by CRN), by name."""
        return self._jobs.list_all(project_crn)

    def update_job(self, name: str, /, **changes: Any) -> Job:
        """Change some fields of a job's spec, checked as a whole (``JobSpec.changed``). Giving
        any of ``cron``, ``every_ms``, ``after``, ``manual`` replaces the whole schedule."""
        return self._jobs.update(name, changes)

    def delete_job(self, name: str) -> None:
        """Remove a job with its runs, claims and run metrics. Conflict for a built-in job
        (pause it instead) and for a parent of other jobs (naming them)."""
        self._jobs.delete(name)

    def set_paused(self, name: str, paused: bool) -> Job:
        """Pause (the scheduler starts no runs of it) or resume a job."""
        return self._jobs.set_paused(name, paused)

    def children_of(self, job_id: str) -> list[Job]:
        """The jobs that run after ``job_id`` (a name or id), by name."""
        return self._jobs.children_of(job_id)

    # -- runs -----------------------------------------------------------------------------------
    def create_run(
        self,
        job_id: str,
        slot_ms: int,
        attempt: int,
        trigger: str,
        parent_run_id: str | None = None,
    ) -> Run:
        """Record a ``queued`` run of ``job_id`` (name or id) for ``slot_ms``; ``attempt`` is
        1 to the job's ``retries + 1``."""
        return self._runs.create(job_id, slot_ms, attempt, trigger, parent_run_id)

    def claim_slot(
        self, job_id: str, slot_ms: int, attempt: int, owner: str, lease_ms: int
    ) -> bool:
        """Claim (job, slot, attempt) for ``owner`` until ``lease_ms`` from now: True for the
        one winner. A claim whose lease expired and whose run never started may be taken over;
        otherwise False (another scheduler, or an earlier life of this one, has it)."""
        return self._runs.claim(job_id, slot_ms, attempt, owner, lease_ms)

    def renew_claim(
        self, job_id: str, slot_ms: int, attempt: int, owner: str, lease_ms: int
    ) -> bool:
        """Extend the claim of ``owner`` to ``lease_ms`` from now; False if ``owner`` lost it."""
        return self._runs.renew(job_id, slot_ms, attempt, owner, lease_ms)

    def slot_claim(self, job_id: str, slot_ms: int, attempt: int) -> SlotClaim | None:
        """The claim of (job, slot, attempt), or None if nobody claimed it."""
        return self._runs.claim_of(job_id, slot_ms, attempt)

    def update_run(
        self,
        run_id: str,
        *,
        state: str | None = None,
        exit_code: int | None = None,
        started_ms: int | None = None,
        ended_ms: int | None = None,
        log_path: str | None = None,
        api_key_id: str | None = None,
    ) -> Run:
        """Change the given fields (None: unchanged). States move queued -> running|cancelled
        and running -> succeeded|failed|timed_out|cancelled only (InvalidInput otherwise; the
        current state again changes nothing). ``running`` sets ``started_ms`` (default now) and
        marks the slot's claim started: Conflict if another run of the slot started first. A
        final state sets ``ended_ms`` (default now)."""
        return self._runs.update(
            run_id,
            state=state,
            exit_code=exit_code,
            started_ms=started_ms,
            ended_ms=ended_ms,
            log_path=log_path,
            api_key_id=api_key_id,
        )

    def get_run(self, run_id: str) -> Run:
        return self._runs.get(run_id)

    def resolve_run(self, text: str) -> str:
        """The id of the run ``text`` names: its id, its uuid, or an unambiguous prefix of its
        uuid (4 characters or more, as git names commits). InvalidInput for a short or
        ambiguous prefix (listing the candidates), NotFound when no run starts so."""
        head = "crn:modelyard:run/"
        if is_uuid(text.removeprefix(head)):
            return head + text.removeprefix(head)
        prefix = check_prefix(text, "run", "'modelyard jobs logs 8f5c3d1a'")
        found = self._runs.ids_with_prefix(prefix, SHOWN + 1)
        return choose(text, "run", found, "'modelyard jobs runs JOB' lists a job's runs")

    def list_runs(
        self,
        job: str | None = None,
        states: Iterable[str] | None = None,
        limit: int = 100,
        before_ms: int | None = None,
    ) -> list[Run]:
        """Runs (of one job, in some states, queued before ``before_ms``), newest first."""
        return self._runs.select(job, states, limit, before_ms)

    def last_slot(self, job_id: str) -> int | None:
        """The latest slot claimed for the job's first attempts, manual runs left out (None:
        none yet): the scheduler counts due and missed slots from it."""
        return self._runs.last_slot(job_id)

    def running_runs(self, job_id: str) -> list[Run]:
        """The job's runs in state ``running`` (not ``queued``), oldest first."""
        return self._runs.running(job_id)

    def add_run_metrics(
        self, run_id: str, metrics: Mapping[str, Any], tracked_ms: int | None = None
    ) -> list[RunMetric]:
        """Record metrics tracked inside a run (name -> JSON value), at ``tracked_ms`` (now)."""
        return self._run_metrics.add_metrics(run_id, metrics, tracked_ms)

    def run_metrics(self, run_id: str) -> list[RunMetric]:
        """The run's metrics in the order they were tracked (a name tracked twice appears
        twice)."""
        return self._run_metrics.metrics(run_id)

    def prune_runs(self, older_than_ms: int) -> list[Run]:
        """Delete finished runs that ended before ``older_than_ms`` with their metrics and old
        slot claims (each job's last scheduled claim stays); returns them, oldest first, so the
        caller can delete their logs."""
        return self._runs.prune(older_than_ms)
