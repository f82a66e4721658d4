"""A batch of typed prediction rows as metric columns (``TypedMetrics.columns``).

The common batch, one layout and no delayed values, is one ``bytes.join`` plus one
``numpy.frombuffer``: each numeric key is then a view of that buffer. Batches mixing layouts,
rows without one (JSON text), or delayed values are assembled key by key, and give the same
columns the JSON rows would have given: an array only where every row holds a number of one
kind, else a list with None where a row lacks the key; keys in order of first appearance.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from modelyard.store.typed import Layout, TypedMetrics

__all__ = ["columns", "numbers_in_column", "overlay_delayed", "packed_columns"]

_Part = tuple[Any, Any]  # (row positions: a sequence or an index array; values: array or list)


def columns(tm: TypedMetrics) -> dict[str, Any]:
    import numpy as np

    n = len(tm)
    if n == 0:
        return {}
    layouts = tm.layouts
    first = layouts[0]
    uniform = first is not None and layouts.count(first) == n
    cols = _group(first, tm.numbers, lambda: tm.rests) if first and uniform else _mixed(tm, n)
    if tm.has_delayed:
        _overlay(cols, tm.delayed, n, np)
        if not uniform:  # a delayed key may come before the keys of a later layout
            cols = {key: cols[key] for key in _first_appearance(tm)}
    return cols


def numbers_in_column(column: Any) -> list[float]:
    """The finite numbers of one column of ``columns`` (None: the key is absent), as floats:
    booleans, strings and nulls are not numbers."""
    import numpy as np

    if column is None:
        return []
    if isinstance(column, list):
        return [float(v) for v in column if type(v) in (int, float) and math.isfinite(v)]
    if column.dtype.kind not in "fi":
        return []
    numbers = column.astype(np.float64)
    out: list[float] = numbers[np.isfinite(numbers)].tolist()
    return out


def packed_columns(layout: Layout, packed: bytes) -> dict[str, Any]:
    """Columns of rows of one all-number layout whose numbers are ``packed`` back to back."""
    return _group(layout, [packed], list)


def overlay_delayed(cols: dict[str, Any], delayed: Sequence[str | None], n: int) -> None:
    """``cols`` with each row's delayed values on top (see ``_overlay``)."""
    import numpy as np

    _overlay(cols, delayed, n, np)


def _first_appearance(tm: TypedMetrics) -> dict[str, None]:
    """Every key of the batch in order of first appearance, row by row."""
    order: dict[str, None] = {}
    seen: set[int] = set()
    for i, (layout, delayed) in enumerate(zip(tm.layouts, tm.delayed, strict=True)):
        if layout is None:
            order.update(dict.fromkeys(orjson.loads(tm.rests[i])))
        elif id(layout) not in seen:
            seen.add(id(layout))
            order.update(dict.fromkeys(layout.keys))
        if delayed is not None:
            order.update(dict.fromkeys(orjson.loads(delayed)))
    return order


def _group(
    layout: Layout, numbers: Sequence[bytes | None], rests: Callable[[], Sequence[str]]
) -> dict[str, Any]:
    """Columns of rows that share ``layout`` (every key present in every row); ``rests`` gives
    their JSON texts, asked for only when the layout has keys kept as JSON."""
    import numpy as np

    out: dict[str, Any] = {}
    packed: Any = None
    if layout.numeric_at:
        packed = np.frombuffer(b"".join(numbers), dtype=layout.dtype)  # type: ignore[arg-type]
    json_cols: dict[int, list[Any]] = {}
    if layout.json_at:
        decoded = list(map(orjson.loads, rests()))
        for j, pos in enumerate(layout.json_at):
            json_cols[pos] = list(map(itemgetter(j), decoded))
    for pos, key in enumerate(layout.keys):
        col = json_cols.get(pos)
        out[key] = packed[f"f{pos}"] if col is None else col
    return out


def _mixed(tm: TypedMetrics, n: int) -> dict[str, Any]:
    """Columns of rows of several layouts, or without one, in order of first appearance."""
    import numpy as np

    groups: dict[Any, list[int]] = {}
    legacy: dict[str, tuple[list[int], list[Any]]] = {}
    order: dict[str, None] = {}
    for i, layout in enumerate(tm.layouts):
        if layout is None:
            metrics = orjson.loads(tm.rests[i])
            for key, value in metrics.items():
                order.setdefault(key)
                at, values = legacy.setdefault(key, ([], []))
                at.append(i)
                values.append(value)
            continue
        rows = groups.get(layout)
        if rows is None:
            rows = groups[layout] = []
            order.update(dict.fromkeys(k for k in layout.keys if k not in order))
        rows.append(i)
    parts: dict[str, list[_Part]] = {}
    for layout, rows in groups.items():
        rests = functools.partial(_pick, tm, rows)
        cols = _group(layout, [tm.numbers[i] for i in rows], rests)
        index = np.array(rows, dtype=np.intp)
        for key, values in cols.items():
            parts.setdefault(key, []).append((index, values))
    for key, part in legacy.items():
        parts.setdefault(key, []).append(part)
    return {key: _assemble(parts[key], n, np) for key in order}


def _pick(tm: TypedMetrics, rows: list[int]) -> list[str]:
    return [tm.rests[i] for i in rows]


def _assemble(parts: list[_Part], n: int, np: Any) -> Any:
    covered = sum(len(values) for _, values in parts)
    arrays = [values for _, values in parts if isinstance(values, np.ndarray)]
    if covered == n and len(arrays) == len(parts):
        kinds = {a.dtype.kind for a in arrays}
        dtype = {"b": np.bool_, "i": np.int64}.get(kinds.pop()) if len(kinds) == 1 else None
        if dtype is None and kinds <= {"f", "i"}:
            dtype = np.float64
        if dtype is not None:
            out = np.empty(n, dtype=dtype)
            for rows, values in parts:
                out[rows] = values
            return out
    column: list[Any] = [None] * n
    for rows, values in parts:
        plain = values.tolist() if isinstance(values, np.ndarray) else values
        for i, value in zip(rows, plain, strict=True):
            column[i] = value
    return column


def _overlay(cols: dict[str, Any], delayed: Sequence[str | None], n: int, np: Any) -> None:
    """Put each row's delayed values on top (a key new to the batch goes after the others).

    A value of exactly the array's kind goes into the array (copied once: arrays may be views of
    the fetched bytes); any other value turns the column into a list, which the frame builder
    types as it types JSON rows (a None makes a number column float64 with NaN, and so on).
    """
    copied: set[str] = set()
    fits = {"f": float, "i": int, "b": bool}
    for i, text in enumerate(delayed):
        if text is None:
            continue
        for key, value in orjson.loads(text).items():
            col = cols.get(key)
            if col is None:
                col = cols[key] = [None] * n
            elif isinstance(col, np.ndarray):
                vtype = type(value)
                if fits.get(col.dtype.kind) is not vtype or (
                    vtype is int and not -(2**63) <= value < 2**63
                ):
                    col = cols[key] = col.tolist()
                elif key not in copied:
                    col = cols[key] = col.copy()
                    copied.add(key)
            col[i] = value
