"""Mergeable summaries of the metrics in one rollup bucket.

A rollup bucket replaces many raw prediction records by one ``BucketSummary``: for every metric
key either a ``NumericSummary`` (count, sum, sum of squares, min, max, a running mean and M2 for a
stable standard deviation, and a KLL quantile sketch) or a ``CategoricalSummary`` (category ->
count), or both when a key carried numbers in some records and strings in others. Summaries merge
(``merge`` / ``+=``) so finer buckets coarsen into wider ones without ever averaging quantiles:
count, sum, min and max stay exact, the standard deviation uses Chan et al.'s parallel update, and
quantiles come from merged sketches whose rank error the library states. The summaries of one
key, and the sketch choice, are in ``modelyard.store.sketches``.

Flattening rules of ``BucketSummary.add_metrics``:

- nested dicts flatten with dotted keys: ``{"a": {"b": 1}}`` is key ``a.b``;
- ``bool`` becomes the category ``"true"``/``"false"`` (checked before ``int``: bool is an int);
- ``str`` is a category; a finite ``int``/``float`` (numpy scalars included) is numeric;
- a list or tuple contributes each element under the same key by the rules above;
- ``None``, NaN, infinities, numbers too large for a float and anything else (nested lists,
  dicts inside lists, bytes...) are skipped and counted in ``skipped``.

``to_dict`` (what reads return as a rollup record's ``metrics``) maps a numeric key to
``{"count", "sum", "min", "max", "mean", "std", "p01".."p99", "rank_error"}`` and a categorical key
to ``{"count", "categories"}``. A key that was both keeps both, nothing is dropped: its entry is
the numeric dict plus ``"categories"`` and ``"categorical_count"`` (the number of string/bool
values). Two reserved entries hold bucket totals: ``_records`` (predictions folded) always, and
``_skipped`` (values skipped) only when it is not zero. ``std`` is the population standard
deviation (ddof=0).

``to_bytes`` writes a versioned binary form (magic, version, an orjson header, then each sketch's
own serialisation); pickle is never used.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import orjson

from modelyard.errors import InvalidInput
from modelyard.store.sketches import (
    KLL_K,
    MAX_CATEGORIES,
    OTHER,
    QUANTILES,
    CategoricalSummary,
    NumericSummary,
)

__all__ = [
    "FORMAT_VERSION",
    "KLL_K",
    "MAX_CATEGORIES",
    "OTHER",
    "QUANTILES",
    "BucketSummary",
    "CategoricalSummary",
    "NumericSummary",
]

FORMAT_VERSION: Final = 1

_MAGIC: Final = b"MYBS"
_PREFIX = struct.Struct("<4sBI")  # magic, format version, header length


class BucketSummary:
    """Every metric key of the predictions folded into one bucket, plus record totals.

    >>> b = BucketSummary()
    >>> b.add_metrics({"latency": 12.5, "label": True, "scores": [0.1, 0.9], "x": {"y": 2}})
    >>> sorted(b.numeric), sorted(b.categorical), b.records, b.skipped
    (['latency', 'scores', 'x.y'], ['label'], 1, 0)
    """

    __slots__ = ("categorical", "numeric", "records", "skipped")

    def __init__(self) -> None:
        self.numeric: dict[str, NumericSummary] = {}
        self.categorical: dict[str, CategoricalSummary] = {}
        self.records = 0
        self.skipped = 0

    def add_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Fold one prediction's metrics in (see the module docstring for the rules)."""
        if not isinstance(metrics, Mapping):
            raise InvalidInput(
                f"metrics must be a dict of key -> value, got {type(metrics).__name__}"
            )
        self.records += 1
        self._add_mapping(metrics, "")

    def _add_mapping(self, mapping: Mapping[Any, Any], prefix: str) -> None:
        # Rollups fold millions of records through here: plain floats (the common case) take a
        # path of exact type checks and a list append; everything else goes through _add_value.
        numeric = self.numeric
        isfinite = math.isfinite
        for raw_key, value in mapping.items():
            key = prefix + raw_key if type(raw_key) is str else f"{prefix}{raw_key}"
            kind = type(value)
            if kind is float:
                if not isfinite(value):
                    self.skipped += 1
                    continue
                summary = numeric.get(key)
                if summary is None:
                    summary = numeric[key] = NumericSummary()
                summary.add_finite(value)
            elif kind is dict or (kind is not str and isinstance(value, Mapping)):
                self._add_mapping(value, key + ".")
            elif kind is list or kind is tuple:
                for item in value:
                    self._add_value(key, item)
            else:
                self._add_value(key, value)

    def _add_value(self, key: str, value: Any) -> None:
        if isinstance(value, bool | np.bool_):
            self._category(key, "true" if value else "false")
        elif isinstance(value, str):
            self._category(key, value)
        elif isinstance(value, int | float | np.integer | np.floating):
            try:
                number = float(value)
            except OverflowError:  # an int beyond float range
                self.skipped += 1
                return
            if not math.isfinite(number):
                self.skipped += 1
                return
            summary = self.numeric.get(key)
            if summary is None:
                summary = self.numeric[key] = NumericSummary()
            summary.add_finite(number)
        else:
            self.skipped += 1

    def _category(self, key: str, category: str) -> None:
        summary = self.categorical.get(key)
        if summary is None:
            summary = self.categorical[key] = CategoricalSummary()
        summary.update(category)

    def merge(self, other: BucketSummary) -> None:
        """Add everything ``other`` holds; ``other`` is left unchanged."""
        if not isinstance(other, BucketSummary):
            raise InvalidInput(
                f"cannot merge {type(other).__name__} into a BucketSummary; "
                "pass another BucketSummary"
            )
        if other is self:
            other = other.copy()
        self.records += other.records
        self.skipped += other.skipped
        for key, numeric in other.numeric.items():
            mine = self.numeric.get(key)
            if mine is None:
                self.numeric[key] = numeric.copy()
            else:
                mine.merge(numeric)
        for key, categorical in other.categorical.items():
            theirs = self.categorical.get(key)
            if theirs is None:
                self.categorical[key] = categorical.copy()
            else:
                theirs.merge(categorical)

    def __iadd__(self, other: BucketSummary) -> BucketSummary:
        self.merge(other)
        return self

    def copy(self) -> BucketSummary:
        clone = BucketSummary()
        clone.merge(self)
        return clone

    def keys(self) -> list[str]:
        """Every metric key, numeric or categorical, sorted."""
        return sorted(self.numeric.keys() | self.categorical.keys())

    def to_dict(self) -> dict[str, Any]:
        """The ``metrics`` of a rollup record (see the module docstring for the shape)."""
        out: dict[str, Any] = {"_records": self.records}
        if self.skipped:
            out["_skipped"] = self.skipped
        for key in self.keys():
            numeric = self.numeric.get(key)
            categorical = self.categorical.get(key)
            if numeric is not None:
                entry = numeric.to_dict()
                if categorical is not None:
                    entry["categories"] = categorical.categories
                    entry["categorical_count"] = categorical.count
                out[key] = entry
            elif categorical is not None:
                out[key] = categorical.to_dict()
        return out

    # -- serialisation --------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Compact, versioned bytes: magic, version, an orjson header, then the sketches."""
        numeric_keys = sorted(self.numeric)
        states = [self.numeric[key].to_state() for key in numeric_keys]
        sketches = [blob for _, blob in states]
        header = orjson.dumps(
            {
                "records": self.records,
                "skipped": self.skipped,
                "numeric": [
                    [key, *moments, len(blob)]
                    for key, (moments, blob) in zip(numeric_keys, states, strict=True)
                ],
                "categorical": {
                    key: summary.to_state() for key, summary in sorted(self.categorical.items())
                },
            }
        )
        return b"".join([_PREFIX.pack(_MAGIC, FORMAT_VERSION, len(header)), header, *sketches])

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> BucketSummary:
        """Read what ``to_bytes`` wrote; InvalidInput for anything else."""
        raw = bytes(data)
        if len(raw) < _PREFIX.size:
            raise InvalidInput(
                f"{len(raw)} bytes are too short to be a bucket summary (written by to_bytes)"
            )
        magic, version, header_len = _PREFIX.unpack_from(raw)
        if magic != _MAGIC:
            raise InvalidInput(
                f"bytes starting {raw[:4]!r} are not a bucket summary; expected magic {_MAGIC!r}"
            )
        if version != FORMAT_VERSION:
            raise InvalidInput(
                f"bucket summary format version {version} is not supported; this Modelyard "
                f"reads version {FORMAT_VERSION} (upgrade Modelyard to read newer data)"
            )
        try:
            start = _PREFIX.size
            header = orjson.loads(raw[start : start + header_len])
            offset = start + header_len
            summary = cls()
            summary.records = int(header["records"])
            summary.skipped = int(header["skipped"])
            for key, *state, blob_len in header["numeric"]:
                blob = raw[offset : offset + blob_len]
                if len(blob) != blob_len:
                    raise ValueError(f"sketch of {key!r} is truncated")
                offset += blob_len
                summary.numeric[key] = NumericSummary.from_state(state, blob)
            for key, (cap, counts) in header["categorical"].items():
                summary.categorical[key] = CategoricalSummary.from_state(cap, counts)
        except InvalidInput:
            raise
        except (ValueError, KeyError, TypeError, RuntimeError, orjson.JSONDecodeError) as exc:
            raise InvalidInput(
                f"bucket summary bytes are damaged ({exc.__class__.__name__}: {exc}); "
                "expected the output of BucketSummary.to_bytes"
            ) from exc
        if offset != len(raw):
            raise InvalidInput(
                f"bucket summary has {len(raw) - offset} unexpected trailing bytes; "
                "expected the output of BucketSummary.to_bytes"
            )
        return summary

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BucketSummary):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"BucketSummary(records={self.records}, numeric={len(self.numeric)}, "
            f"categorical={len(self.categorical)}, skipped={self.skipped})"
        )
