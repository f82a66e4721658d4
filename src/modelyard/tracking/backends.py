"""Where tracked metrics go: the dev, embedded and remote backends, and how one is chosen.

The choice is made at call time from the arguments and the environment (so a test or a notebook
that changes ``MODELYARD_HOME`` takes effect at once), in this order:

1. ``dev=True`` on the call: **dev**, an in-memory SQLite store that lives as long as the
   process (one per process), recording under the fixed ``DEV_IDENTITY``. The dev identifiers are
   printed to stderr once, as the reference platform does.
2. ``MODELYARD_URL`` set: **remote**, HTTP to that Modelyard server with ``MODELYARD_API_KEY``
   (see ``modelyard.tracking.remote``).
3. A home is configured: ``MODELYARD_HOME`` or ``MODELYARD_DATABASE_URL`` set in the environment,
   or ``MODELYARD_DEPLOYMENT_CRN`` set, or the default home folder (``~/.modelyard``) exists:
   **embedded**, the store opened in this process with ``open_store()`` (PostgreSQL when
   ``MODELYARD_DATABASE_URL`` says so, else SQLite at ``$MODELYARD_HOME/modelyard.db``).
4. Otherwise: **dev**, as in 1.

The identity predictions are recorded under comes from ``modelyard.tracking.identity``: the
environment in replicas and jobs, the fixed dev identity in dev mode, else the home's local
identity.

The first time a process opens a backend it says on stderr, in one line, where its records go
and which of these rules chose it (``modelyard: using the store at ..., because
MODELYARD_HOME is set``), so a script that quietly kept its records in memory, or wrote them into
an old ``~/.modelyard``, is noticed at once. Only the first call says it, and only on stderr, so
``--json`` output and pipes are untouched.

Each backend is opened once per process and target and kept until exit; at exit every backend's
buffered records are flushed (the writer also flushes itself at exit).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard import settings
from modelyard.clock import now_ms
from modelyard.errors import InvalidInput
from modelyard.homedir import make_home
from modelyard.store.base import (
    DelayedBatch,
    Distribution,
    Identity,
    Prediction,
    Query,
    Record,
    RowBatch,
)
from modelyard.tracking import _env
from modelyard.tracking.base import Backend
from modelyard.tracking.identity import DEV_IDENTITY, env_identity, local_identity

if TYPE_CHECKING:
    from modelyard.store.base import MetricsStore

__all__ = [
    "RUN_ID_ENV",
    "Backend",
    "StoreBackend",
    "StoreSink",
    "close_all",
    "flush_all",
    "select",
    "source_string",
]

RUN_ID_ENV = "MODELYARD_RUN_ID"


class StoreBackend(Backend):
    """A store in this process behind a ``BufferedWriter``: the dev and embedded backends.

    Run metrics (tracked outside a prediction inside a job run) are appended as JSON lines to
    ``$MODELYARD_HOME/runs/<run id>/metrics.jsonl``, and the files an experiment run keeps
    (``track_file``) to ``files.jsonl`` beside it, next to where the runtime keeps the run's
    other files; the store interface has no run table, and the jobs part reads them from there.
    """

    def __init__(self, name: str, sink: StoreSink, identity: Identity | None) -> None:
        self.name = name
        self.sink = sink
        self.store = sink.store
        self.writer = sink.writer
        self._identity = identity
        self._lock = threading.Lock()
        self._registered = False

    @property
    def identity(self) -> Identity:
        if self._identity is None:
            with self._lock:
                if self._identity is None:
                    self._identity = local_identity()
        return self._identity

    def submit(self, prediction: Prediction) -> None:
        self.writer.submit(prediction)

    def flush(self) -> None:
        self.writer.flush()

    def _register_own(self, query: Query) -> None:
        """Make this process's identity known before reading it.

        The store refuses identifiers it has never seen; a script reading its own identity before
        any of its records is written should get an empty list instead.
        """
        if self._registered:
            return
        ident = self.identity
        if (
            query.deployment_crn == ident.deployment_crn
            or query.build_crn == ident.build_crn
            or query.model_crn == ident.model_crn
        ):
            self.store.register_identity(ident)
            self._registered = True

    def read(self, query: Query) -> tuple[list[Record], str | None]:
        self._register_own(query)
        return self.store.read(query)

    def scan(self, query: Query, batch_size: int) -> Iterator[RowBatch]:
        self._register_own(query)
        return self.store.scan(query, batch_size)

    def distribution(
        self, query: Query, key: str, quantiles: Sequence[float], bins: int
    ) -> Distribution:
        self._register_own(query)
        return self.store.distribution(query, key, quantiles, bins)

    def add_delayed(self, uuid: str, metrics: dict[str, Any], source: str) -> None:
        self.store.add_delayed(uuid, metrics, source)

    def add_delayed_many(
        self,
        items: Sequence[tuple[str, dict[str, Any]]],
        source: str,
        skip_unchanged: bool = False,
    ) -> DelayedBatch:
        return self.store.add_delayed_many(items, source, skip_unchanged=skip_unchanged)

    def add_aggregate(
        self, deployment_crn: str, start_ms: int, end_ms: int, metrics: dict[str, Any]
    ) -> None:
        self._register_own(Query(deployment_crn=deployment_crn))
        self.store.add_aggregate(deployment_crn, start_ms, end_ms, metrics)

    def track_run_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        _append_run_line(run_id, "metrics.jsonl", {"trackedMs": now_ms(), "metrics": metrics})

    def track_run_file(self, run_id: str, path: str) -> None:
        _append_run_line(run_id, "files.jsonl", {"path": path, "trackedMs": now_ms()})

    def close(self) -> None:
        """Nothing of its own to close: the sink is shared and closed by ``close_all``."""
        self.flush()


def _append_run_line(run_id: str, name: str, item: dict[str, Any]) -> None:
    """Append ``item`` as one JSON line to ``<home>/runs/<run_id>/<name>``."""
    import orjson

    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        raise InvalidInput(
            f"{RUN_ID_ENV}={run_id!r} is not a run id; expected a single path-safe name"
        )
    folder = make_home(settings.home()) / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    line = orjson.dumps(item) + b"\n"
    with open(folder / name, "ab") as fh:  # one write: appends stay whole lines
        fh.write(line)


class StoreSink:
    """One store and its one writer, shared by every backend of this process that uses them.

    Two identities recording into the same database (a test switching
    ``MODELYARD_DEPLOYMENT_CRN``, say) must not open two connections with two writer threads:
    all SQLite writes of a process go through one writer.
    """

    def __init__(self, store: MetricsStore) -> None:
        from modelyard.store.writer import BufferedWriter

        self.store = store
        self.writer = BufferedWriter(store)

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.store.close()


def source_string() -> str:
    """Where a delayed value came from: host, process and, inside a job, the run."""
    source = f"{socket.gethostname()} pid {os.getpid()}"
    run_id = os.environ.get(RUN_ID_ENV)
    if run_id:
        source += f" run {run_id}"
    return source


# -- selection ----------------------------------------------------------------------------------

_backends: dict[tuple[str, ...], Backend] = {}
_sinks: dict[str, StoreSink] = {}
_select_lock = threading.Lock()
_dev_announced = False


def _default_home() -> Path:
    return Path(os.path.expanduser(str(settings.SETTINGS["home"].default)))


def _home_configured(
    home_env: str | None, database_url: str | None, deployment: str | None
) -> bool:
    return bool(home_env or database_url or deployment or _default_home().is_dir())


def _why(raw: tuple[str | None, ...]) -> str:
    """Why ``_key(raw)`` chose what it chose, in the words of the module docstring's rules."""
    url, _, home_env, database_url, deployment, *_ = raw
    if url:
        return "MODELYARD_URL is set"
    if database_url:
        return "MODELYARD_DATABASE_URL is set"
    if home_env:
        return "MODELYARD_HOME is set"
    if deployment:
        return "MODELYARD_DEPLOYMENT_CRN is set"
    default = _default_home()
    if default.is_dir():
        return (
            f"the default home {default} exists; without it and without MODELYARD_HOME, "
            "records would be kept in memory only"
        )
    return (
        "no MODELYARD_URL, MODELYARD_HOME or MODELYARD_DATABASE_URL is set and the default home "
        f"{default} does not exist (set one of them, or create that folder, to keep records)"
    )


def _key(raw: tuple[str | None, ...]) -> tuple[str, ...]:
    url, api_key, home_env, database_url, deployment, build, model, _ = raw
    identity = f"{deployment or ''}|{build or ''}|{model or ''}"
    if url:
        return ("remote", url, api_key or "", identity)
    if _home_configured(home_env, database_url, deployment):
        return ("embedded", database_url or str(settings.home()), identity)
    return ("dev",)


# The environment variables the choice depends on (HOME too: it locates the default home).
_ENV_NAMES = (
    "MODELYARD_URL",
    "MODELYARD_API_KEY",
    "MODELYARD_HOME",
    "MODELYARD_DATABASE_URL",
    "MODELYARD_DEPLOYMENT_CRN",
    "MODELYARD_BUILD_CRN",
    "MODELYARD_MODEL_CRN",
    "HOME",
)


_snapshot = _env.reader(_ENV_NAMES)
_by_env: dict[tuple[str | None, ...], Backend] = {}
_dev: Backend | None = None


def select(dev: bool = False) -> Backend:
    """The backend for a call made now with this ``dev`` flag (see the module docstring).

    Called on every prediction, so the common case is one environment snapshot and one dict
    lookup; the full choice (which may look at the file system) runs only when the relevant
    environment variables change. The default home folder's existence is therefore checked when
    the environment is first seen, not on every call.
    """
    if dev:
        return _dev if _dev is not None else _select_dev()
    raw = _snapshot()
    backend = _by_env.get(raw)
    if backend is not None:
        return backend
    key = _key(raw)
    if key == ("dev",):
        backend = _select_dev(_why(raw))
    else:
        with _select_lock:
            backend = _backends.get(key)
            if backend is None:
                backend = _open(key)
                _backends[key] = backend
                _announce(backend, _why(raw))
    _by_env[raw] = backend
    return backend


def _select_dev(why: str = "dev=True was passed") -> Backend:
    global _dev
    with _select_lock:
        if _dev is None:
            backend = _backends.get(("dev",))
            if backend is None:
                backend = _backends[("dev",)] = _open(("dev",))
                _announce_dev(why)
            _dev = backend
        return _dev


def _open(key: tuple[str, ...]) -> Backend:
    kind = key[0]
    if kind == "dev":
        from modelyard.store.sqlite import SQLiteStore

        return StoreBackend("dev", StoreSink(SQLiteStore(":memory:")), DEV_IDENTITY)
    if kind == "remote":
        from modelyard.tracking.remote import RemoteBackend

        return RemoteBackend(key[1], key[2] or None, env_identity())
    from modelyard.store.open import open_store

    target = key[1]
    sink = _sinks.get(target)
    if sink is None:
        sink = _sinks[target] = StoreSink(open_store())
    identity = env_identity()
    if identity is not None and not os.environ.get("MODELYARD_MODEL_CRN"):
        identity = _known_identity(sink.store, identity)
    return StoreBackend("embedded", sink, identity)


def _known_identity(store: MetricsStore, identity: Identity) -> Identity:
    """Prefer the model and build the registry already knows for this deployment."""
    from modelyard.errors import NotFound

    try:
        return store.resolve(identity.deployment_crn)
    except NotFound:
        return identity


def _announce_dev(why: str) -> None:
    global _dev_announced
    if _dev_announced:
        return
    _dev_announced = True
    names = {
        "modelCrn": DEV_IDENTITY.model_crn,
        "modelBuildCrn": DEV_IDENTITY.build_crn,
        "modelDeploymentCrn": DEV_IDENTITY.deployment_crn,
    }
    print(
        "modelyard: dev mode, metrics are kept in memory for this process only, because "
        f"{why}; identifiers: {json.dumps(names)}",
        file=sys.stderr,
    )


def _announce(backend: Backend, why: str) -> None:
    """One line on stderr when a process first opens a store or server backend: where its
    records go and which rule chose it, so nobody has to guess (see the module docstring)."""
    from modelyard.store.sqlbase import SQLStore
    from modelyard.tracking.remote import RemoteBackend

    if isinstance(backend, RemoteBackend):
        where = f"the server at {backend.url}"
    elif isinstance(backend, StoreBackend) and isinstance(backend.store, SQLStore):
        where = f"the store at {backend.store.location}"  # a PostgreSQL URL without its password
    else:
        where = f"the {backend.name} backend"
    print(f"modelyard: using {where}, because {why}", file=sys.stderr)


def flush_all() -> None:
    """Flush every backend opened by this process."""
    for backend in list(_backends.values()):
        backend.flush()


def close_all() -> None:
    """Flush and close every backend; the next call opens fresh ones (used at exit and in tests)."""
    global _dev_announced, _dev
    with _select_lock:
        closing: list[Backend | StoreSink] = [
            b for b in _backends.values() if not isinstance(b, StoreBackend)
        ]
        closing += list(_sinks.values())
        closing += [  # the dev sink is the one not kept in _sinks
            b.sink for b in _backends.values() if isinstance(b, StoreBackend) and b.name == "dev"
        ]
        _backends.clear()
        _sinks.clear()
        _by_env.clear()
        _dev = None
        _dev_announced = False
    errors: list[BaseException] = []
    for item in closing:
        try:
            item.close()
        except Exception as exc:  # close the others before reporting
            errors.append(exc)
    # Calls to a server share one connection pool per process: close it once backends flushed.
    client = sys.modules.get("modelyard.client")
    if client is not None:
        client.close_pool()
    if errors:
        raise errors[0]


def _forget_after_fork() -> None:
    # A forked child inherits the parent's writers without their threads; it must open its own.
    global _dev
    _backends.clear()
    _sinks.clear()
    _by_env.clear()
    _dev = None


atexit.register(close_all)
os.register_at_fork(after_in_child=_forget_after_fork)
