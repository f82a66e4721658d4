"""Builds on the base environment: real snapshots, real smoke-test processes, real logs."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from modelyard.builds import build, build_log_path, read_build_log
from modelyard.builds.smoke import FALLBACK_MODULE_NAME, module_name
from modelyard.errors import InvalidInput, NotFound, PayloadTooLarge

Writer = Callable[..., Path]

GOOD = {
    "predict.py": """
        from helpers import scale

        with open("weights.txt") as handle:  # relative to the project: the smoke test's cwd
            WEIGHT = float(handle.read())

        def predict(args):
            return {"score": scale(args["x"]) * WEIGHT}
    """,
    "helpers.py": "def scale(x):\n    return 2 * x\n",
    "weights.txt": "1.5\n",
}


def test_good_function_builds(project: Writer, modelyard_home: Path):
    result = build(project(GOOD), "predict.py", "predict", example={"x": 2})

    assert result.ok and result.error is None, result.log_tail
    assert result.build_crn.startswith("crn:modelyard:build/")
    assert result.python == Path(sys.executable) and result.environment_key == "base"
    assert result.snapshot_path == modelyard_home / "builds" / "snapshots" / result.digest
    assert result.log_path == build_log_path(result.build_crn)
    assert result.log_path.parent == modelyard_home / "builds" / "logs"
    assert 'predict(example) returned {"score": 6.0}' in result.log_tail
    assert result.log_tail.splitlines()[-1].startswith("[modelyard] build ok in")
    # The smoke test wrote nothing into the immutable snapshot (no __pycache__).
    assert sorted(p.name for p in result.snapshot_path.iterdir()) == sorted(GOOD)
    orjson.dumps(result.to_dict())


def test_two_builds_of_the_same_code_share_the_snapshot_not_the_identity(project: Writer):
    root = project(GOOD)
    first = build(root, "predict.py", "predict", example={"x": 1})
    second = build(root, "predict.py", "predict", example={"x": 1})
    assert first.ok and second.ok
    assert first.digest == second.digest and first.snapshot_path == second.snapshot_path
    assert first.build_crn != second.build_crn and first.log_path != second.log_path
    assert "reused" in second.log_tail


@pytest.mark.parametrize(
    ("source", "function", "error", "in_tail"),
    [
        (
            "def predict(args):\n    return args['x'] / 0\n",
            "predict",
            "predict(example) raised an exception",
            "ZeroDivisionError: division by zero",
        ),
        (
            "def predict(args):\n    return {'y': {1, 2}}\n",
            "predict",
            "returned a value that is not JSON",
            "set is not JSON serializable",
        ),
        (
            "def predict(args):\n    return {'y': float('nan')}\n",
            "predict",
            "returned a value that is not JSON",
            "NaN and Infinity are not JSON",
        ),
        (
            "def other(args):\n    return {}\n",
            "predict",
            "predict.py has no callable predict",
            "'predict.py' defines no 'predict'; callables it defines: other",
        ),
        (
            "predict = {'not': 'callable'}\n",
            "predict",
            "predict.py has no callable predict",
            "predict.py:predict is a dict, not a function",
        ),
        (
            "import no_such_module_anywhere\ndef predict(args):\n    return {}\n",
            "predict",
            "importing predict.py failed",
            "ModuleNotFoundError: No module named 'no_such_module_anywhere'",
        ),
        (
            "def predict(args)\n    return {}\n",
            "predict",
            "importing predict.py failed",
            "SyntaxError",
        ),
    ],
    ids=["raises", "set-output", "nan-output", "missing", "not-callable", "import", "syntax"],
)
def test_failing_smoke_tests_report_the_log_tail(
    project: Writer, source: str, function: str, error: str, in_tail: str
):
    result = build(project({"predict.py": source}), "predict.py", function, example={"x": 1})

    assert not result.ok
    assert result.error is not None and error in result.error
    assert in_tail in result.log_tail
    assert result.log_tail.splitlines()[-1].startswith("[modelyard] build failed:")
    assert len(result.log_tail.splitlines()) <= 40
    # The whole log is kept on disk and agrees with the tail.
    assert result.log_path.read_text().endswith(result.log_tail)


def test_numpy_outputs_pass_as_the_replica_encodes_them(project: Writer):
    """A replica encodes numpy scalars and arrays (orjson's numpy support), so the smoke test,
    which uses the standard library only, accepts them too instead of failing the build."""
    source = (
        "import numpy\n"
        "def predict(args):\n"
        "    return {'label': numpy.int64(2), 'p': numpy.array([0.25, 0.75]),\n"
        "            'ok': numpy.bool_(1)}\n"
    )
    result = build(project({"predict.py": source}), "predict.py", "predict", example={"x": 1})
    assert result.ok, result.error
    assert '"label": 2' in result.log_tail and '"p": [0.25, 0.75]' in result.log_tail


def test_the_tail_is_the_last_forty_lines(project: Writer):
    source = "def predict(args):\n    for i in range(200):\n        print('line', i)\n    1 / 0\n"
    result = build(project({"predict.py": source}), "predict.py", "predict", example={})
    lines = result.log_tail.splitlines()
    assert len(lines) == 40 and "ZeroDivisionError" in result.log_tail
    assert "line 0\n" not in result.log_tail and "line 0" in result.log_path.read_text()


def test_without_an_example_the_function_is_imported_not_called(project: Writer):
    source = "def predict(args):\n    raise RuntimeError('must not be called')\n"
    result = build(project({"predict.py": source}), "predict.py", "predict")
    assert result.ok, result.log_tail
    assert "the function was not called" in result.log_tail


def test_a_hanging_function_fails_at_the_timeout(project: Writer):
    source = "import time\ndef predict(args):\n    time.sleep(60)\n"
    started = time.monotonic()
    result = build(
        project({"predict.py": source}), "predict.py", "predict", example={}, smoke_timeout_s=1.5
    )
    assert not result.ok and "did not finish within 1.5s" in (result.error or "")
    assert time.monotonic() - started < 20


def test_tracked_metrics_of_the_smoke_test_stay_out_of_the_home(
    project: Writer, modelyard_home: Path
):
    source = """
        import modelyard

        @modelyard.model_metrics
        def predict(args):
            modelyard.track_metric("input", args["x"])
            return {"y": 1}
    """
    result = build(project({"predict.py": source}), "predict.py", "predict", example={"x": 3})
    assert result.ok, result.log_tail
    assert '"prediction": {"y": 1}' in result.log_tail
    # Without the scratch home the embedded backend would have created this database.
    assert not list(modelyard_home.glob("modelyard.db*"))
    assert not list((modelyard_home / "builds" / "smoke").iterdir())


@pytest.mark.parametrize(
    "file",
    [
        "../x.py",
        "/etc/passwd",
        "a/../../x.py",
        "sub/../predict.py",
        "..\\x.py",
        "predict.py\x00.txt",
        "",
        ".",
        "predict.txt",
        "/tmp/predict.py",
    ],
)
def test_file_must_be_a_python_file_inside_the_project(
    project: Writer, modelyard_home: Path, file: str
):
    with pytest.raises(InvalidInput) as err:
        build(project(GOOD), file, "predict")
    assert repr(file) in str(err.value) and "relative path inside the project" in str(err.value)
    assert not (modelyard_home / "builds").exists()  # refused before anything ran


@pytest.mark.parametrize("function", ["", "os.system", "predict()", "1abc", "a b", None])
def test_function_must_be_an_identifier(project: Writer, function: object):
    with pytest.raises(InvalidInput, match="is not a Python identifier"):
        build(project(GOOD), "predict.py", function)  # type: ignore[arg-type]


@pytest.mark.parametrize("requirements", ["../requirements.txt", "/etc/shadow", "a/../../r.txt"])
def test_requirements_must_be_inside_the_project(project: Writer, requirements: str):
    with pytest.raises(InvalidInput, match=r"requirements=.*points outside the project"):
        build(project(GOOD), "predict.py", "predict", requirements=requirements)


@pytest.mark.parametrize("example", [[1, 2], "{}", {"x": float("inf")}, {"x": object()}])
def test_example_must_be_a_json_object(project: Writer, example: object):
    with pytest.raises(InvalidInput, match="example"):
        build(project(GOOD), "predict.py", "predict", example=example)  # type: ignore[arg-type]


def test_file_excluded_by_ignore_rules_is_refused_and_logged(project: Writer, modelyard_home: Path):
    root = project({**GOOD, ".modelyardignore": "predict.py\n"})
    with pytest.raises(InvalidInput, match=r"'predict\.py' is not a file in the project snapshot"):
        build(root, "predict.py", "predict")
    (log,) = (modelyard_home / "builds" / "logs").iterdir()
    assert "build refused" in log.read_text()


def test_symlinked_file_escaping_the_project_is_refused(project: Writer, tmp_path: Path):
    (tmp_path / "evil.py").write_text("def predict(args):\n    return {}\n")
    root = project(GOOD)
    (root / "model.py").symlink_to(tmp_path / "evil.py")
    with pytest.raises(InvalidInput, match=r"'model\.py' points to .*outside the project"):
        build(root, "model.py", "predict")


def test_snapshot_size_limits_apply_to_builds(project: Writer):
    root = project({**GOOD, "model.bin": b"\x00" * 5000})
    with pytest.raises(PayloadTooLarge, match=r"'model\.bin' is 5000 bytes"):
        build(root, "predict.py", "predict", max_file_bytes=4096)


def test_build_log_can_be_read_back(project: Writer):
    result = build(project(GOOD), "predict.py", "predict", example={"x": 1})
    bare = result.build_crn.removeprefix("crn:modelyard:build/")
    assert read_build_log(result.build_crn) == result.log_path.read_text()
    assert read_build_log(bare, tail_lines=1) == result.log_tail.splitlines(keepends=True)[-1]
    with pytest.raises(NotFound, match="has no log"):
        read_build_log(f"crn:modelyard:build/{uuid.uuid4()}")


@pytest.mark.parametrize(
    "build_id",
    [
        "../../etc/passwd",
        "crn:modelyard:build/../../etc/passwd",
        "crn:modelyard:build/x/../../y",
        "crn:modelyard:model/" + "12345678-1234-5678-1234-567812345678",
        "12345678-1234-5678-1234-567812345678/../x",
        "12345678123456781234567812345678",  # a uuid, but not in its canonical form
        "",
    ],
)
def test_log_routes_refuse_anything_but_a_build_identifier(build_id: str):
    with pytest.raises(InvalidInput, match="is not a build identifier"):
        build_log_path(build_id)
    with pytest.raises(InvalidInput):
        read_build_log(build_id)


def test_module_names_never_shadow_standard_modules():
    assert module_name("predict.py") == "predict"
    assert module_name("src/model.py") == "model"
    for shadowing in ("json.py", "code.py", "sys.py", "my-model.py", "class.py"):
        assert module_name(shadowing) == FALLBACK_MODULE_NAME, shadowing


def test_paths_may_be_given_as_path_objects(project: Writer):
    result = build(project(GOOD), Path("predict.py"), "predict", example={"x": 1})
    assert result.ok and result.file == "predict.py"
    with pytest.raises(InvalidInput, match="points outside the project"):
        build(project(GOOD, "again"), Path("../predict.py"), "predict")


def test_unreadable_requirements_refuse_the_build_and_say_so_in_the_log(
    project: Writer, modelyard_home: Path
):
    root = project({**GOOD, "requirements.txt": b"\xff\xfe not text"})
    with pytest.raises(InvalidInput, match=r"requirements file .* cannot be read"):
        build(root, "predict.py", "predict", requirements="requirements.txt")
    (log,) = (modelyard_home / "builds" / "logs").iterdir()
    assert "build refused: requirements file" in log.read_text()
