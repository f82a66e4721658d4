"""Numeric metrics in a typed column: layouts, packing, and batches of rows back to columns.

A prediction's metrics are stored as its *layout* (its top-level keys in order, each with a type
letter: ``f`` float64, ``i`` int64, ``b`` boolean, ``j`` anything else, as JSON), the values of
its f/i/b keys packed as little-endian binary (``numbers``), and a JSON array of its ``j`` values
(``metrics``; empty when there are none). Layouts are kept once per store in ``metric_layouts``
and cached here. Reading a batch of rows that share a layout is then one ``bytes.join`` and one
``numpy.frombuffer``: no text is decoded for a number (migration 0007, ``docs/store.md``).

What is read back is exactly what JSON would have given: a non-finite float is stored as JSON
null (as before), an integer outside int64 stays JSON, key order is kept, and a row without a
layout (``layout_id`` NULL: written before version 7 or past ``MAX_LAYOUTS``) keeps its whole
metrics object as JSON text.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import orjson

from modelyard.store.sqltypes import Cursor, Execute

__all__ = [
    "MAX_LAYOUTS",
    "Layout",
    "Layouts",
    "TypedMetrics",
    "convert_rows",
    "layout_of",
]

# Distinct layouts a store keeps; records of further new layouts are stored as JSON text (a
# guard against keys that vary without bound, e.g. one key per customer).
MAX_LAYOUTS = 10_000
_FORMAT = {"f": "d", "i": "q", "b": "?"}
_DTYPE = {"f": "<f8", "i": "<i8", "b": "?"}
_EMPTY = ""  # no j values: the empty string, which the drivers hand back without allocating
_I64 = (-(2**63), 2**63)


def _code(value: Any) -> str:
    """The type letter ``value`` is stored under."""
    kind = type(value)
    if kind is float or (isinstance(value, float) and kind is not bool):
        return "f" if value - value == 0.0 else "j"  # NaN and infinities: JSON null, as before
    if kind is int:
        return "i" if _I64[0] <= value < _I64[1] else "j"
    if kind is bool:
        return "b"
    return "j"


class Layout:
    """One layout: keys, type letters, and how to pack and unpack its values."""

    __slots__ = (
        "_dtype",
        "_json_get",
        "all_numeric",
        "bound",
        "id",
        "json_at",
        "keys",
        "num_get",
        "numeric_at",
        "pack",
        "size",
        "types",
        "unpack",
    )

    def __init__(self, layout_id: int | None, keys: tuple[str, ...], types: str) -> None:
        self.id = layout_id
        self.keys = keys
        self.types = types
        self.numeric_at = tuple(i for i, t in enumerate(types) if t != "j")
        self.json_at = tuple(i for i, t in enumerate(types) if t == "j")
        self.all_numeric = bool(types) and not self.json_at
        packer = struct.Struct("<" + "".join(_FORMAT[types[i]] for i in self.numeric_at))
        self.pack, self.unpack, self.size = packer.pack, packer.unpack, packer.size
        self.num_get = _getter(self.numeric_at)
        self._json_get = _getter(self.json_at)
        self._dtype: Any = None
        # The most JSON bytes the keys and numbers can take (a key escaped, 24 per number): with
        # the j values' text, an upper bound of the record's JSON size, checked against the limit.
        self.bound = 2 + sum(6 * len(k) + 4 for k in keys) + 24 * len(self.numeric_at)

    @property
    def digest(self) -> str:
        return _digest(self.keys, self.types)

    def encode(self, values: Sequence[Any]) -> tuple[bytes | None, str]:
        """(packed numbers, JSON array of the j values) of values in this layout's order;
        struct.error if a value does not fit its letter."""
        numbers = self.pack(*self.num_get(values)) if self.numeric_at else None
        if not self.json_at:
            return numbers, _EMPTY
        rest = orjson.dumps(self._json_get(values), option=orjson.OPT_SERIALIZE_NUMPY)
        return numbers, rest.decode()

    def values(self, numbers: bytes | None, rest: str) -> dict[str, Any]:
        """A stored row's metrics as the dict that was written (JSON-equal)."""
        if not self.json_at:
            return dict(zip(self.keys, self.unpack(numbers or b""), strict=True))
        out: list[Any] = [None] * len(self.keys)
        for i, v in zip(self.numeric_at, self.unpack(numbers or b""), strict=True):
            out[i] = v
        for i, v in zip(self.json_at, orjson.loads(rest), strict=True):
            out[i] = v
        return dict(zip(self.keys, out, strict=True))

    @property
    def dtype(self) -> Any:
        """The NumPy record type of ``numbers`` (fields ``f<position>``)."""
        if self._dtype is None:
            import numpy as np

            self._dtype = np.dtype(
                [(f"f{i}", _DTYPE[self.types[i]]) for i in self.numeric_at]  # packed, no padding
            )
        return self._dtype


def _getter(positions: tuple[int, ...]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    if len(positions) == 1:
        only = positions[0]
        return lambda values: (values[only],)
    if not positions:
        return lambda values: ()
    return itemgetter(*positions)


def _digest(keys: tuple[str, ...], types: str) -> str:
    return hashlib.sha256(orjson.dumps([list(keys), types])).hexdigest()


def layout_of(metrics: dict[str, Any]) -> tuple[tuple[str, ...], str] | None:
    """(keys, type letters) of a metrics dict; None when a key is not a string (JSON refuses)."""
    keys = tuple(metrics)
    if not all(type(k) is str for k in keys):
        return None
    return keys, "".join(map(_code, metrics.values()))


class Layouts:
    """The layouts of one store, cached (layouts never change once written)."""

    def __init__(self, execute: Execute) -> None:
        self._exec = execute
        self.by_id: dict[int, Layout] = {}
        self.by_shape: dict[tuple[tuple[str, ...], str], Layout] = {}
        # (keys, Python types of the values) -> layout, for values that need no further check
        # than a finite sum (floats) and int64 range (struct); see ``SQLStore`` encoding.
        self.plans: dict[tuple[tuple[str, ...], tuple[type, ...]], Layout] = {}

    def load(self, cur: Cursor) -> None:
        rows = self._exec(cur, "SELECT id, keys, types FROM metric_layouts", ()).fetchall()
        for layout_id, keys, types in rows:
            if int(layout_id) not in self.by_id:
                self._add(Layout(int(layout_id), tuple(orjson.loads(keys)), str(types)))

    def _add(self, layout: Layout) -> None:
        assert layout.id is not None
        self.by_id[layout.id] = layout
        self.by_shape[(layout.keys, layout.types)] = layout

    def get(self, cur: Cursor, layout_id: int) -> Layout:
        found = self.by_id.get(layout_id)
        if found is None:
            self.load(cur)
            found = self.by_id[layout_id]
        return found

    def lookup(self, keys: tuple[str, ...], types: str) -> Layout:
        """The known layout of this shape, or a new one without an id (``ensure`` gives it one)."""
        found = self.by_shape.get((keys, types))
        return found if found is not None else Layout(None, keys, types)

    def full(self) -> bool:
        return len(self.by_id) >= MAX_LAYOUTS

    def ensure(self, cur: Cursor, layout: Layout) -> int:
        """The id of ``layout`` in the database, inserting it if new (inside a write
        transaction; concurrent writers of the same layout meet on the digest's key)."""
        digest = layout.digest
        self._exec(
            cur,
            "INSERT INTO metric_layouts (digest, keys, types) VALUES (?, ?, ?) "
            "ON CONFLICT (digest) DO NOTHING",
            (digest, orjson.dumps(list(layout.keys)).decode(), layout.types),
        )
        row = self._exec(
            cur, "SELECT id FROM metric_layouts WHERE digest = ?", (digest,)
        ).fetchone()
        return int(row[0])

    def assign(
        self,
        cur: Cursor,
        rows: list[tuple[Any, ...]],
        new: list[Layout],
        learned: list[tuple[int, Layout]],
    ) -> list[tuple[Any, ...]]:
        """``rows`` (as ``encode.encode_predictions`` makes them) with the ids of the layouts
        ``new`` to this store in place of the layouts, which are inserted inside the caller's
        write transaction (``learned`` gets them, to cache once it commits). Past
        ``MAX_LAYOUTS`` (counted in the database: other processes add layouts too) a row keeps
        its whole metrics as JSON text instead."""
        learned.clear()  # a retried transaction starts over
        stored = int(self._exec(cur, "SELECT COUNT(*) FROM metric_layouts", ()).fetchone()[0])
        room = max(0, MAX_LAYOUTS - stored)
        ids: dict[int, int] = {}
        for layout in new[:room]:
            ids[id(layout)] = layout_id = self.ensure(cur, layout)
            learned.append((layout_id, layout))
        out: list[tuple[Any, ...]] = []
        for r in rows:
            found = ids.get(id(r[5])) if type(r[5]) is Layout else None
            if found is not None:
                r = (*r[:5], found, r[6])
            elif type(r[5]) is Layout:  # past the limit: the whole metrics as JSON text
                r = (*r[:4], orjson.dumps(r[5].values(r[6], r[4])).decode(), None, None)
            out.append(r)
        return out

    def row_metrics(
        self, cur: Cursor, metrics: str, delayed: str | None, layout_id: int | None, numbers: Any
    ) -> dict[str, Any]:
        """A stored row's metrics (its columns as named) as a dict, delayed values on top."""
        out: dict[str, Any] = (
            orjson.loads(metrics)
            if layout_id is None
            else self.get(cur, layout_id).values(numbers, metrics)
        )
        if delayed is not None:
            out.update(orjson.loads(delayed))
        return out

    def learn(self, learned: Sequence[tuple[int, Layout]]) -> None:
        """Cache layouts once their transaction committed."""
        for layout_id, layout in learned:
            if layout_id not in self.by_id:
                self._add(Layout(layout_id, layout.keys, layout.types))


# -- converting rows stored before version 7 -----------------------------------------------------

_CONVERT_CHUNK = 20_000


def convert_rows(cur: Cursor, execute: Execute, dialect: str) -> int:
    """Migration 0007: give every JSON-only prediction row its layout and typed numbers, in key
    order and chunks, inside the migration's transaction. Returns the rows converted."""
    layouts = Layouts(execute)
    ids: dict[tuple[tuple[str, ...], str], int] = {}
    after: tuple[Any, ...] = (-(2**63), -(2**63), "")
    done = 0
    while True:
        rows = execute(
            cur,
            "SELECT deployment_id, start_ms, uuid, metrics FROM predictions "
            "WHERE (deployment_id, start_ms, uuid) > (?, ?, ?) AND layout_id IS NULL "
            "ORDER BY deployment_id, start_ms, uuid LIMIT ?",
            (*after, _CONVERT_CHUNK),
        ).fetchall()
        if not rows:
            return done
        updates = []
        for dep_id, start, uuid, text in rows:
            metrics = orjson.loads(text)
            shape = layout_of(metrics) if type(metrics) is dict else None
            if shape is None:
                continue
            layout_id = ids.get(shape)
            if layout_id is None:
                if len(ids) >= MAX_LAYOUTS:
                    continue
                layout_id = ids[shape] = layouts.ensure(cur, Layout(None, *shape))
            numbers, rest = Layout(layout_id, *shape).encode(tuple(metrics.values()))
            updates.append((layout_id, numbers, rest, dep_id, start, uuid))
        _update(cur, execute, dialect, updates)
        done += len(updates)
        after = tuple(rows[-1][:3])


def _update(cur: Cursor, execute: Execute, dialect: str, updates: list[tuple[Any, ...]]) -> None:
    if not updates:
        return
    sql = (
        "UPDATE predictions SET layout_id = ?, numbers = ?, metrics = ? "
        "WHERE deployment_id = ? AND start_ms = ? AND uuid = ?"
    )
    if dialect == "postgres":
        sql = sql.replace("?", "%s")
    cur.executemany(sql, updates)


class TypedMetrics:
    """The metrics of a batch of prediction rows, kept as stored until asked for.

    ``columns()`` gives them column-wise (what a DataFrame wants): top-level key -> a NumPy array
    when every row holds a number of one kind under it, else a list (None where a row lacks the
    key); keys in order of first appearance, delayed values merged. ``texts()`` gives each row's
    merged metrics as JSON text, as ``RowBatch.metrics`` always held.
    """

    def __init__(
        self, layouts: Sequence[Layout | None], rows: Sequence[Sequence[Any]], at: tuple[int, ...]
    ) -> None:
        """``rows`` hold the metrics text, delayed text and numbers at positions ``at``; each
        of those columns is taken out of the rows only when something asks for it."""
        self.layouts = layouts
        self._rows = rows
        self._at = at
        self.has_delayed = any(map(itemgetter(at[1]), rows))

    def _take(self, i: int) -> list[Any]:
        return list(map(itemgetter(self._at[i]), self._rows))

    @functools.cached_property
    def rests(self) -> list[str]:
        return self._take(0)

    @functools.cached_property
    def delayed(self) -> list[str | None]:
        return self._take(1) if self.has_delayed else [None] * len(self._rows)

    @functools.cached_property
    def numbers(self) -> list[bytes | None]:
        return self._take(2)

    def __len__(self) -> int:
        return len(self._rows)

    def row(self, i: int) -> dict[str, Any]:
        layout = self.layouts[i]
        out: dict[str, Any] = (
            orjson.loads(self.rests[i])
            if layout is None
            else layout.values(self.numbers[i], self.rests[i])
        )
        delayed = self.delayed[i]
        if delayed is not None:
            out.update(orjson.loads(delayed))
        return out

    def texts(self) -> list[str]:
        dumps = orjson.dumps
        return [dumps(self.row(i)).decode() for i in range(len(self))]

    def columns(self) -> dict[str, Any]:
        from modelyard.store import typedcols

        return typedcols.columns(self)
