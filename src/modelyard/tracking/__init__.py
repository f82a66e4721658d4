"""The tracking SDK: record predictions and their metrics, read them back.

Everything here is re-exported by ``modelyard`` itself; ``modelyard.cdsw`` offers the same calls
under the reference platform's names. How a backend (dev, embedded, remote) is chosen is described
in ``modelyard.tracking.backends``.
"""

from __future__ import annotations

from modelyard.store.base import Identity
from modelyard.tracking import backends
from modelyard.tracking.call import call_model
from modelyard.tracking.capture import capture
from modelyard.tracking.decorator import model_metrics
from modelyard.tracking.distribution import read_distribution
from modelyard.tracking.files import track_file
from modelyard.tracking.identity import DEV_IDENTITY
from modelyard.tracking.later import flush, track_aggregate_metrics, track_delayed_metrics
from modelyard.tracking.read import iter_metrics, read_metrics, read_metrics_frame
from modelyard.tracking.track import NotRecordedWarning, track_metric, track_metrics

__all__ = [
    "DEV_IDENTITY",
    "NotRecordedWarning",
    "call_model",
    "capture",
    "current_identity",
    "flush",
    "iter_metrics",
    "model_metrics",
    "read_distribution",
    "read_metrics",
    "read_metrics_frame",
    "track_aggregate_metrics",
    "track_delayed_metrics",
    "track_file",
    "track_metric",
    "track_metrics",
]


def current_identity(dev: bool = False) -> Identity:
    """The (model, build, deployment) CRNs this process records predictions under.

    Use its ``deployment_crn`` with ``read_metrics`` in a script that recorded under the home's
    local identity.
    """
    return backends.select(dev).identity
