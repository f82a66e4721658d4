"""Hosts the metrics store."""

from modelyard.store.rollup import bucket_start, coarsen, fold, validate_policy, validate_tiers
from modelyard.store.summary import BucketSummary, CategoricalSummary, NumericSummary

__all__ = [
    "BucketSummary",
    "CategoricalSummary",
    "NumericSummary",
    "bucket_start",
    "coarsen",
    "fold",
    "validate_policy",
    "validate_tiers",
]
