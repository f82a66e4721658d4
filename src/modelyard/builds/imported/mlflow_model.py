"""What the generated entry of an MLflow import runs inside the replica: load the pyfunc model
once, convert each request to what its signature says, call it, make its output JSON.

Two request shapes, told apart by their keys:

- one row, ``{"column": value, ...}``: a one-row DataFrame, answered ``{"prediction": value}``
  (a DataFrame output's row comes back as an object, an array's element as itself). The signature's
  ``params`` may come as a ``"params"`` key unless a column is called that;
- a body ``mlflow models serve`` accepts: ``{"dataframe_split": {"columns", "data"}}``,
  ``{"dataframe_records": [...]}``, ``{"instances": ...}`` or ``{"inputs": ...}``, with
  ``"params"``: answered ``{"predictions": [...]}`` as MLflow answers, so clients written for
  MLflow's scoring server keep their bodies.

Inputs are converted to the signature: columns of type ``double``/``float``/``long``/``integer``/
``boolean``/``string``/``binary`` (base64 text)/``datetime`` get that type (a JSON ``3`` for a
``double`` column is ``3.0``; ``1.5`` for a ``long`` column is refused, naming the column), missing
required columns are refused naming the ones expected, columns the signature does not name are
dropped; tensor inputs become NumPy arrays of the spec's dtype. MLflow's own schema check then runs
as ``mlflow models serve`` runs it. Nothing here imports MLflow until ``load_model`` is called.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MlflowInputError", "MlflowModel", "load_model"]

_SCORING_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_NUMERIC = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32"}


class MlflowInputError(ValueError):
    """A request that does not fit the model's signature; the message names the value."""


def load_model(entry_file: str, model_path: str) -> MlflowModel:
    """The pyfunc model in ``model_path``, relative to the folder of ``entry_file``."""
    import mlflow.pyfunc  # type: ignore[import-not-found]  # only the build env has MLflow

    folder = Path(entry_file).resolve().parent / model_path
    return MlflowModel(mlflow.pyfunc.load_model(str(folder)))


class MlflowModel:
    """A loaded pyfunc model with its signature's input schema and params schema."""

    def __init__(self, model: Any) -> None:
        self.model = model
        metadata = getattr(model, "metadata", None)
        self.schema = metadata.get_input_schema() if metadata is not None else None
        self.has_params = metadata is not None and metadata.get_params_schema() is not None
        self.tensor = bool(self.schema is not None and self.schema.is_tensor_spec())
        self.columns: list[Any] = (
            [] if self.schema is None or self.tensor else list(self.schema.inputs)
        )
        self.named = bool(self.columns) and all(c.name is not None for c in self.columns)

    # -- one request -----------------------------------------------------------------------------

    def predict(self, args: Any) -> dict[str, Any]:
        """One request's answer (see the module docstring for the shapes)."""
        if _is_scoring(args):
            data, params = self._scoring_input(args)
            return {"predictions": _jsonable(self._call(data, params))}
        row, params = self._row(args)
        out = _jsonable(self._call(self._frame([row]), params))
        return {"prediction": out[0] if isinstance(out, list) and len(out) == 1 else out}

    def predict_batch(self, items: list[Any]) -> list[dict[str, Any]]:
        """One answer per request; plain rows without params go through one call together."""
        rows = [item for item in items if isinstance(item, dict) and not _is_scoring(item)]
        if len(rows) != len(items) or self.tensor or any(self._takes_params(r) for r in rows):
            return [self.predict(item) for item in items]
        out = _jsonable(self._call(self._frame(rows), None))
        if not isinstance(out, list) or len(out) != len(items):
            return [self.predict(item) for item in items]
        return [{"prediction": value} for value in out]

    # -- inputs ----------------------------------------------------------------------------------

    def _row(self, args: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if not isinstance(args, dict):
            raise MlflowInputError(
                f"the input is a {type(args).__name__}, not a JSON object; send one row as "
                '{"column": value, ...} or a body mlflow models serve accepts, such as '
                '{"dataframe_split": {"columns": [...], "data": [[...]]}}'
            )
        if self.tensor:
            raise MlflowInputError(
                "this model's signature takes tensors, not named columns; send "
                '{"inputs": [...]} (or {"inputs": {"name": [...]}} for named tensors)'
            )
        if self._takes_params(args):
            row = dict(args)
            return row, _params(row.pop("params"))
        return args, None

    def _takes_params(self, row: dict[str, Any]) -> bool:
        return "params" in row and not any(c.name == "params" for c in self.columns)

    def _scoring_input(self, body: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        params = _params(body.get("params"))
        if "dataframe_split" in body:
            split = body["dataframe_split"]
            if not isinstance(split, dict) or not isinstance(split.get("data"), list):
                raise MlflowInputError(
                    f"dataframe_split={split!r:.200} is not an object with 'columns' and a "
                    "'data' list of rows"
                )
            frame = pd.DataFrame(split["data"], columns=split.get("columns"))
            return self._convert(frame), params
        if "dataframe_records" in body:
            records = body["dataframe_records"]
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise MlflowInputError(
                    f"dataframe_records={records!r:.200} is not a list of row objects"
                )
            return self._frame(records), params
        key = "inputs" if "inputs" in body else "instances"
        return self._tensor_input(body[key], key), params

    def _tensor_input(self, value: Any, key: str) -> Any:
        if self.tensor:
            assert self.schema is not None
            specs = list(self.schema.inputs)
            if isinstance(value, dict):
                by_name = {s.name: s for s in specs}
                return {k: _array(v, by_name.get(k), f"{key}.{k}") for k, v in value.items()}
            return _array(value, specs[0] if len(specs) == 1 else None, key)
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return self._frame(value)
        if isinstance(value, dict) and self.named:
            return self._convert(pd.DataFrame(value))
        return np.asarray(value)

    def _frame(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        return self._convert(pd.DataFrame.from_records(rows))

    def _convert(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the signature's columns, in its order, of its types."""
        if not self.named:
            return frame
        missing = [c.name for c in self.columns if c.required and c.name not in frame.columns]
        if missing:
            raise MlflowInputError(
                f"the input has no column {', '.join(map(repr, missing))}; the model's signature "
                f"expects {_describe(self.columns)}"
            )
        out = {}
        for spec in self.columns:
            if spec.name in frame.columns:
                out[spec.name] = _column(frame[spec.name], spec)
        return pd.DataFrame(out, index=frame.index)

    def _call(self, data: Any, params: dict[str, Any] | None) -> Any:
        if params is not None and self.has_params:
            return self.model.predict(data, params=params)
        return self.model.predict(data)


def _is_scoring(args: Any) -> bool:
    return (
        isinstance(args, dict)
        and any(k in args for k in _SCORING_KEYS)
        and set(args) <= {*_SCORING_KEYS, "params"}
        and sum(k in args for k in _SCORING_KEYS) == 1
    )


def _params(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise MlflowInputError(f"params={value!r:.200} is not a JSON object of parameter values")


def _type_name(spec: Any) -> str:
    kind = getattr(spec, "type", None)
    return str(getattr(kind, "name", kind))


def _describe(columns: list[Any]) -> str:
    return ", ".join(f"{c.name} ({_type_name(c)})" for c in columns)


def _column(series: pd.Series, spec: Any) -> Any:  # noqa: C901 - one branch per MLflow type
    """``series`` as the type ``spec`` (an MLflow ColSpec) names, or a clear error."""
    kind = _type_name(spec)
    values = series.tolist()

    def refuse(value: Any, why: str = "") -> MlflowInputError:
        return MlflowInputError(
            f"column {spec.name!r}: {value!r:.100} is not a {kind}{why}; the model's signature "
            f"says {spec.name} is {kind}"
        )

    if kind in _NUMERIC:
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float | np.number) or v is None:
                raise refuse(v)
            if kind in ("long", "integer") and not float(v).is_integer():
                raise refuse(v, " (it has a fraction)")
        return series.astype(np.dtype(_NUMERIC[kind]))
    if kind == "boolean":
        for v in values:
            if not isinstance(v, bool | np.bool_):
                raise refuse(v)
        return series.astype(bool)
    if kind == "string":
        for v in values:
            if not isinstance(v, str):
                raise refuse(v)
        return series
    if kind == "binary":
        try:
            return pd.Series(
                [v if isinstance(v, bytes) else base64.b64decode(v, validate=True) for v in values],
                index=series.index,
                dtype=object,
            )
        except (binascii.Error, TypeError, ValueError) as exc:
            raise refuse(values[0], " (binary columns take base64 text)") from exc
    if kind == "datetime":
        try:
            return pd.to_datetime(series)
        except (TypeError, ValueError) as exc:
            raise refuse(values[0], f" ({exc})") from exc
    return series


def _array(value: Any, spec: Any, key: str) -> np.ndarray:
    dtype = getattr(spec, "type", None) if spec is not None else None
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise MlflowInputError(
            f"{key}={value!r:.100} cannot be made an array of {dtype} ({exc}); the model's "
            f"signature expects {spec}"
        ) from exc


def _jsonable(out: Any) -> Any:
    """A prediction as JSON values: a DataFrame as a list of row objects, arrays as lists."""
    if isinstance(out, pd.DataFrame):
        return json.loads(out.to_json(orient="records", date_format="iso"))
    if isinstance(out, pd.Series | np.ndarray):
        return _jsonable(out.tolist())
    if isinstance(out, dict):
        return {str(k): _jsonable(v) for k, v in out.items()}
    if isinstance(out, list | tuple):
        return [_jsonable(v) for v in out]
    if isinstance(out, np.generic):
        return out.item()
    if isinstance(out, pd.Timestamp):
        return out.isoformat()
    return out
