"""Which store the in-process helpers use: the one given, else the SDK's embedded store.

``upload_reference``, ``load_reference``, ``list_references`` and ``list_alerts`` work on the
monitors' state, which the registry keeps in the store's database (``Registry.monitors``; their
REST routes and the CLI cover remote use). Sharing
the SDK's store object also shares its one writer (SQLite allows one per file) and its buffered
predictions are flushed first. ``run_monitor`` itself chooses between this embedded path and the
server over HTTP in ``modelyard.monitors.access``.
"""

from __future__ import annotations

import atexit
import os

from modelyard.errors import InvalidInput
from modelyard.store.base import MetricsStore

__all__ = ["monitor_store"]


def monitor_store(store: MetricsStore | None) -> MetricsStore:
    """``store`` if given, else the SDK's embedded store (flushed); InvalidInput says why not."""
    if store is not None:
        return store
    from modelyard.tracking import backends

    backend = backends.select()
    if isinstance(backend, backends.StoreBackend) and backend.name == "embedded":
        backend.flush()
        return backend.store
    if backend.name == "remote" and (
        os.environ.get("MODELYARD_DATABASE_URL") or os.environ.get("MODELYARD_HOME")
    ):
        # A job run talks to the server over HTTP (MODELYARD_URL) and also gets the server's
        # home: the monitor opens that database itself (SQLite takes writers from several
        # processes; this process's SDK writes nothing to it directly).
        return _own_store()
    raise InvalidInput(
        f"monitors need the metrics database, but the SDK backend here is {backend.name!r}; "
        "set MODELYARD_HOME or MODELYARD_DATABASE_URL (postgresql://...) to the server's store"
    )


_opened: list[MetricsStore] = []


def _own_store() -> MetricsStore:
    if not _opened:
        from modelyard.store.open import open_store

        _opened.append(open_store())
        atexit.register(_opened[0].close)
    return _opened[0]
