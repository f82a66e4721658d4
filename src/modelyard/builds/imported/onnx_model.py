"""The runtime side of an ONNX import: the generated entry module loads an ``OnnxModel`` and
serves its ``predict`` and ``predict_batch`` (so the replica batches concurrent calls into one
``InferenceSession.run``).

A request is a JSON object with one value per model input, by the input's name. A value with the
input's rank minus one (one row: ``{"X": [5.1, 3.5, 1.4, 0.2]}`` for an input of shape
``[None, 4]``) answers one object, ``{output name: value}``; a value with the input's full rank
(several rows) answers a list of such objects, one per row. Maps (what a scikit-learn classifier
converted by skl2onnx answers for its probabilities) get string keys, as JSON needs.

Runs inside the replica (and the build's smoke test), never in the server's process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["OnnxModel", "example_for", "input_dtype"]

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


def input_dtype(onnx_type: str) -> str:
    """The numpy dtype name of an ONNX input type such as ``tensor(float)``; ValueError naming
    the type and the accepted ones otherwise."""
    try:
        return _DTYPES[onnx_type]
    except KeyError:
        raise ValueError(
            f"ONNX input type {onnx_type!r} is not supported; supported: {', '.join(_DTYPES)}"
        ) from None


def example_for(inputs: Sequence[tuple[str, str, Sequence[Any]]]) -> dict[str, Any]:
    """A one-row example request for inputs given as ``(name, type, shape)``: zeros (empty
    strings for text) in the shape without its first (batch) dimension; an unknown dimension
    counts as 1."""
    example: dict[str, Any] = {}
    for name, onnx_type, shape in inputs:
        fill: Any = "" if input_dtype(onnx_type) == "object" else 0
        if input_dtype(onnx_type) == "bool":
            fill = False
        value: Any = fill
        for dim in reversed(list(shape)[1:]):
            value = [value] * (dim if isinstance(dim, int) and dim > 0 else 1)
        example[name] = value
    return example


class OnnxModel:
    """An ONNX model served by onnxruntime (CPU). ``path`` is the ``.onnx`` file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import onnxruntime

        self.path = os.fspath(path)
        self.session = onnxruntime.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        self.inputs = [
            (i.name, input_dtype(i.type), len(i.shape)) for i in self.session.get_inputs()
        ]
        self.names = [name for name, _, _ in self.inputs]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def predict(self, args: Any) -> Any:
        """One request: ``{input name: value}``."""
        return self.predict_batch([args])[0]

    def predict_batch(self, items: Sequence[Any]) -> list[Any]:
        """Several requests in one ``run``: their rows stacked per input, the outputs split back
        into one answer per request, in order."""
        import numpy as np

        columns: dict[str, list[Any]] = {name: [] for name in self.names}
        counts: list[int] = []
        singles: list[bool] = []
        for item in items:
            rows, single = self._rows(item, np)
            for name in self.names:
                columns[name].append(rows[name])
            counts.append(len(rows[self.names[0]]))
            singles.append(single)
        feeds = {name: np.concatenate(parts) for name, parts in columns.items()}
        results = self.session.run(None, feeds)
        answers: list[Any] = []
        start = 0
        for count, single in zip(counts, singles, strict=True):
            rows_out = [
                {name: _plain(value[i]) for name, value in zip(self.outputs, results, strict=True)}
                for i in range(start, start + count)
            ]
            answers.append(rows_out[0] if single else rows_out)
            start += count
        return answers

    def _rows(self, item: Any, np: Any) -> tuple[dict[str, Any], bool]:
        if not isinstance(item, dict):
            raise ValueError(
                f"the request is a {type(item).__name__}, not a JSON object; expected "
                f"{{input name: value}} with the model's inputs: {', '.join(self.names)}"
            )
        missing = [n for n in self.names if n not in item]
        unknown = sorted(k for k in item if k not in self.names)
        if missing or unknown:
            raise ValueError(
                f"the request's inputs do not match the ONNX model: missing {missing or 'none'}, "
                f"unknown {unknown or 'none'}; expected exactly the inputs "
                f"{', '.join(self.names)}"
            )
        rows: dict[str, Any] = {}
        single: bool | None = None
        for name, dtype, rank in self.inputs:
            value = np.asarray(item[name], dtype=dtype)
            is_single = value.ndim == rank - 1
            if not is_single and value.ndim != rank:
                raise ValueError(
                    f"input {name!r} has {value.ndim} dimensions; expected {rank - 1} (one row) "
                    f"or {rank} (several rows)"
                )
            if single is not None and single != is_single:
                raise ValueError(
                    "the request mixes one row and several rows across inputs; give every "
                    "input one row, or every input the same number of rows"
                )
            single = is_single
            rows[name] = value[None] if is_single else value
        lengths = {len(v) for v in rows.values()}
        if len(lengths) > 1:
            raise ValueError(
                f"the inputs hold different numbers of rows ({sorted(lengths)}); expected the "
                "same number for every input"
            )
        return rows, bool(single)


def _plain(value: Any) -> Any:
    """A JSON-ready copy: numpy arrays and scalars as lists and numbers, map keys as text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
