"""The metrics store: prediction, delayed and aggregate records, rollups, and how to open one.

``open_store()`` picks the backend (SQLite by default, PostgreSQL from a URL); ``BufferedWriter``
is how the predict path hands records over without waiting on the database. The backends, the
bucket summaries and the rollup helpers are imported on first use, so ``import modelyard.store``
pays for neither psycopg nor numpy and datasketches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.store.base import (
    DEFAULT_TIERS,
    DelayedBatch,
    DelayedValue,
    Distribution,
    Identity,
    MetricsStore,
    Prediction,
    Query,
    Record,
    RecordKind,
    RollupPolicy,
    RollupReport,
    RowBatch,
    StoreInfo,
    Tier,
)
from modelyard.store.journal import Journal, JournalFull
from modelyard.store.open import open_store
from modelyard.store.writer import BufferedWriter

if TYPE_CHECKING:
    from modelyard.store.postgres import PostgresStore
    from modelyard.store.rollup import (
        bucket_start,
        coarsen,
        fold,
        validate_policy,
        validate_tiers,
    )
    from modelyard.store.sqlite import SQLiteStore
    from modelyard.store.summary import BucketSummary, CategoricalSummary, NumericSummary

__all__ = [
    "DEFAULT_TIERS",
    "BucketSummary",
    "BufferedWriter",
    "CategoricalSummary",
    "DelayedBatch",
    "DelayedValue",
    "Distribution",
    "Identity",
    "Journal",
    "JournalFull",
    "MetricsStore",
    "NumericSummary",
    "PostgresStore",
    "Prediction",
    "Query",
    "Record",
    "RecordKind",
    "RollupPolicy",
    "RollupReport",
    "RowBatch",
    "SQLiteStore",
    "StoreInfo",
    "Tier",
    "bucket_start",
    "coarsen",
    "fold",
    "open_store",
    "validate_policy",
    "validate_tiers",
]

_LAZY = {
    "SQLiteStore": "modelyard.store.sqlite",
    "PostgresStore": "modelyard.store.postgres",
    "BucketSummary": "modelyard.store.summary",
    "NumericSummary": "modelyard.store.summary",
    "CategoricalSummary": "modelyard.store.summary",
    "bucket_start": "modelyard.store.rollup",
    "coarsen": "modelyard.store.rollup",
    "fold": "modelyard.store.rollup",
    "validate_policy": "modelyard.store.rollup",
    "validate_tiers": "modelyard.store.rollup",
}


def __getattr__(name: str) -> Any:
    """Import backends and sketches on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelyard.store' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
