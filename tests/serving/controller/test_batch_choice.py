"""``serving.batch_choice``: which batch function replicas will serve, read from the file's syntax
tree, and the warning when an auto-detected ``predict_batch`` bypasses a decorated ``predict``.

The last test checks the answer against what a real replica reports it serves."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from modelyard.serving.controller.batch_choice import BatchChoice, batch_choice
from modelyard.serving.replica.process import ReplicaConfig, load_user_code

DECORATED = """
import modelyard

@modelyard.model_metrics
def predict(args):
    modelyard.track_metric("x", args["x"])
    return args["x"]
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "predict.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_auto_detected_predict_batch_with_a_decorated_predict_warns(tmp_path: Path) -> None:
    path = _file(tmp_path, DECORATED + "\ndef predict_batch(items):\n    return items\n")
    choice = batch_choice(path, "predict", None)
    assert (choice.function, choice.auto) == ("predict_batch", True)
    assert choice.warning is not None
    assert "predict_batch" in choice.warning and "never called" in choice.warning
    assert "--batch-function none" in choice.warning


@pytest.mark.parametrize(
    "decorator",
    ["@model_metrics", "@model_metrics(dev=True)", "@cdsw.model_metrics", "@m.model_metrics()"],
)
def test_every_spelling_of_the_decorator_is_seen(tmp_path: Path, decorator: str) -> None:
    text = f"{decorator}\nasync def predict(args):\n    return args\n\npredict_batch = len\n"
    assert batch_choice(_file(tmp_path, text), "predict", None).warning is not None


@pytest.mark.parametrize(
    ("text", "function", "configured", "expected"),
    [
        # found, but predict is not decorated: said, no warning
        ("def predict(a): ...\ndef predict_batch(b): ...\n", "predict", None,
         BatchChoice("predict_batch", True)),
        # bound by an import or an assignment counts as defined
        ("from m import predict_batch\ndef predict(a): ...\n", "predict", None,
         BatchChoice("predict_batch", True)),
        ("def predict(a): ...\nif True:\n    def predict_batch(b): ...\n", "predict", None,
         BatchChoice(None, False)),  # not top-level: the replica would see it, we say none
        # none in the file, named explicitly, turned off, or the served function itself
        (DECORATED, "predict", None, BatchChoice(None, False)),
        (DECORATED + "def many(b): ...\n", "predict", "many", BatchChoice("many", False)),
        (DECORATED + "def predict_batch(b): ...\n", "predict", "none", BatchChoice(None, False)),
        ("def predict_batch(b): ...\n", "predict_batch", None, BatchChoice(None, False)),
    ],
)  # fmt: skip
def test_choices(
    tmp_path: Path, text: str, function: str, configured: str | None, expected: BatchChoice
) -> None:
    assert batch_choice(_file(tmp_path, text), function, configured) == expected


@pytest.mark.parametrize("with_batch", [True, False])
def test_the_choice_is_what_a_replica_loads(
    tmp_path: Path, with_batch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader puts the snapshot first
    monkeypatch.setattr(sys, "modules", dict(sys.modules))  # and imports the file by name
    text = DECORATED + ("\ndef predict_batch(items):\n    return items\n" if with_batch else "")
    path = _file(tmp_path, text)
    config = ReplicaConfig(str(tmp_path), "predict.py", "predict", 0, "r1")
    code = load_user_code(config)
    assert batch_choice(path, "predict", None).function == code.batch_function_name
