"""The runtime side of a scikit-learn import: the generated entry module loads a
``SklearnModel`` and serves its ``predict`` and ``predict_batch`` (one ``predict`` call of the
estimator for a whole batch of requests).

A request is one row. For an estimator fitted on a table with column names
(``feature_names_in_``) it is ``{column: value, ...}``; otherwise ``{"X": [v1, v2, ...]}``,
and ``{"X": [[...], [...]]}`` sends several rows. One row answers ``{"prediction": y}`` plus
``"probabilities": {class: p}`` when the estimator has ``predict_proba``; several rows answer a
list of those.

Loading: a ``.skops`` file with ``skops.io.load`` and only the types skops trusts plus the ones
the deploy listed (``--trust-type``); a pickle or joblib file (only deployed with
``--trust-pickle``) with ``pickle``/``joblib``, which runs whatever code the file names.
Runs inside the replica (and the build's smoke test), never in the server's process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["FORMATS", "SklearnModel", "load_estimator"]

FORMATS = {".skops": "skops", ".pkl": "pickle", ".pickle": "pickle", ".joblib": "joblib"}


def load_estimator(path: str | os.PathLike[str], trusted: Sequence[str] = ()) -> Any:
    """The estimator in ``path``, loaded by its suffix (see ``FORMATS``)."""
    kind = FORMATS.get(os.path.splitext(os.fspath(path))[1].lower())
    if kind == "skops":
        import skops.io

        return skops.io.load(os.fspath(path), trusted=list(trusted))
    if kind == "joblib":
        import joblib

        return joblib.load(os.fspath(path))
    if kind == "pickle":
        import pickle

        with open(path, "rb") as handle:
            return pickle.load(handle)  # deployed with --trust-pickle only
    raise ValueError(f"{os.fspath(path)!r} is not one of {', '.join(FORMATS)}")


class SklearnModel:
    """A fitted scikit-learn estimator (or pipeline) served one row per request."""

    def __init__(self, path: str | os.PathLike[str], trusted: Sequence[str] = ()) -> None:
        self.estimator = load_estimator(path, trusted)
        names = getattr(self.estimator, "feature_names_in_", None)
        self.features: list[str] | None = None if names is None else [str(n) for n in names]
        self.classes = getattr(self.estimator, "classes_", None)
        self.proba = hasattr(self.estimator, "predict_proba") and self.classes is not None

    def predict(self, args: Any) -> Any:
        """One request (one row, or several with ``{"X": [[...], ...]}``)."""
        return self.predict_batch([args])[0]

    def predict_batch(self, items: Sequence[Any]) -> list[Any]:
        """Several requests in one ``predict`` (and ``predict_proba``) call, answers in order."""
        rows: list[list[Any]] = []
        counts: list[tuple[int, bool]] = []
        for item in items:
            got, single = self._rows(item)
            rows.extend(got)
            counts.append((len(got), single))
        table = self._table(rows)
        labels = self.estimator.predict(table)
        probs = self.estimator.predict_proba(table) if self.proba else None
        answers: list[Any] = []
        start = 0
        for count, single in counts:
            out = []
            for i in range(start, start + count):
                answer: dict[str, Any] = {"prediction": _plain(labels[i])}
                if probs is not None:
                    answer["probabilities"] = {
                        str(_plain(c)): float(p)
                        for c, p in zip(self.classes, probs[i], strict=True)  # type: ignore[arg-type]
                    }
                out.append(answer)
            answers.append(out[0] if single else out)
            start += count
        return answers

    def _table(self, rows: list[list[Any]]) -> Any:
        if self.features is None:
            import numpy as np

            return np.asarray(rows)
        import pandas as pd

        return pd.DataFrame(rows, columns=self.features)

    def _rows(self, item: Any) -> tuple[list[list[Any]], bool]:
        if self.features is not None and isinstance(item, dict) and "X" not in item:
            missing = [f for f in self.features if f not in item]
            unknown = sorted(k for k in item if k not in self.features)
            if missing or unknown:
                raise ValueError(
                    f"the request's columns do not match the model: missing {missing or 'none'}, "
                    f"unknown {unknown or 'none'}; expected the columns it was fitted on: "
                    f"{', '.join(self.features)}"
                )
            return [[item[f] for f in self.features]], True
        if not isinstance(item, dict) or set(item) != {"X"} or not isinstance(item["X"], list):
            named = ", ".join(self.features or ())
            columns = f"{{column: value}} for {named}, or " if self.features else ""
            raise ValueError(
                f"the request {str(item)[:200]} is not accepted; expected {columns}"
                '{"X": [one row of values]} or {"X": [[row], [row], ...]}'
            )
        value = item["X"]
        if value and all(isinstance(v, list) for v in value):
            return [list(v) for v in value], False
        return [value], True


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
