"""``Backend``: what the SDK functions need from wherever metrics live.

Its own module so the backends (``backends.StoreBackend``, ``remote.RemoteBackend``) and the
selection of one (``backends.select``) can import it without importing each other in a circle.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

from modelyard.store.base import (
    DelayedBatch,
    Distribution,
    Identity,
    Prediction,
    Query,
    Record,
    RowBatch,
)

__all__ = ["Backend"]


class Backend(abc.ABC):
    """What the SDK functions need from wherever metrics live.

    ``StoreBackend`` (dev and embedded) and ``RemoteBackend`` implement the same methods, so the
    SDK code above them has one path whatever the deployment looks like.
    """

    name: str

    @property
    @abc.abstractmethod
    def identity(self) -> Identity:
        """The identity new predictions are recorded under."""

    @abc.abstractmethod
    def submit(self, prediction: Prediction) -> None:
        """Queue a prediction record; never waits on the database."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Return once every record submitted so far is durable."""

    @abc.abstractmethod
    def read(self, query: Query) -> tuple[list[Record], str | None]: ...

    @abc.abstractmethod
    def scan(self, query: Query, batch_size: int) -> Iterator[RowBatch]: ...

    @abc.abstractmethod
    def distribution(
        self, query: Query, key: str, quantiles: Sequence[float], bins: int
    ) -> Distribution:
        """Quantiles and histogram of ``key`` (``MetricsStore.distribution``'s contract)."""

    @abc.abstractmethod
    def add_delayed(self, uuid: str, metrics: dict[str, Any], source: str) -> None: ...

    @abc.abstractmethod
    def add_delayed_many(
        self,
        items: Sequence[tuple[str, dict[str, Any]]],
        source: str,
        skip_unchanged: bool = False,
    ) -> DelayedBatch:
        """Delayed metrics of many predictions (``MetricsStore.add_delayed_many``'s contract;
        remotely sent in chunks, each one transaction); unknown uuids reported, not raised."""

    @abc.abstractmethod
    def add_aggregate(
        self, deployment_crn: str, start_ms: int, end_ms: int, metrics: dict[str, Any]
    ) -> None: ...

    @abc.abstractmethod
    def track_run_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        """Metrics of a job run: tracked outside a prediction while ``MODELYARD_RUN_ID`` is set."""

    @abc.abstractmethod
    def track_run_file(self, run_id: str, path: str) -> None:
        """Note that an experiment run keeps the file at ``path`` (POSIX, relative to the run's
        folder, already checked by ``tracking.files``); the runner reads it when the run ends."""

    @abc.abstractmethod
    def close(self) -> None: ...
