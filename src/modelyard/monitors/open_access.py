"""``open_access``: which ``MonitorAccess`` a monitor uses here, the embedded store or the server.

Its own module because it needs both implementations: ``access.EmbeddedAccess`` and
``remote.RemoteAccess`` (which builds on ``access``), so neither has to import the other back.
"""

from __future__ import annotations

from modelyard.errors import InvalidInput
from modelyard.monitors.access import EmbeddedAccess, MonitorAccess
from modelyard.monitors.remote import RemoteAccess
from modelyard.store.base import MetricsStore

__all__ = ["open_access"]


def open_access(store: MetricsStore | None) -> MonitorAccess:
    """``store`` if given; else the SDK's backend here: embedded store, or the server (remote)."""
    if store is not None:
        return EmbeddedAccess(store)
    from modelyard.tracking import backends
    from modelyard.tracking.remote import RemoteBackend

    backend = backends.select()
    if isinstance(backend, backends.StoreBackend) and backend.name == "embedded":
        backend.flush()  # predictions this process tracked are in the window it reads
        return EmbeddedAccess(backend.store)
    if isinstance(backend, RemoteBackend):
        backend.flush()
        return RemoteAccess(backend)
    raise InvalidInput(
        f"monitors need a metrics store or a server, but the SDK backend here is "
        f"{backend.name!r}; set MODELYARD_URL (and MODELYARD_API_KEY) to a server, or "
        "MODELYARD_HOME / MODELYARD_DATABASE_URL to a store"
    )
