"""Build environments: real virtual environments, real pip installs of a local package, offline."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from _threads import in_threads
from modelyard.builds import build, ensure_environment
from modelyard.builds.environments import BASE_KEY, environment_key, normalise_requirements
from modelyard.errors import InvalidInput

Writer = Callable[..., Path]

USES_PACKAGE = textwrap.dedent("""
    import modelyard
    import modelyard_tinypkg

    def predict(args):
        return {"value": modelyard_tinypkg.VALUE, "x": args["x"], "sdk": modelyard.__name__}
""")


def _imports(python: Path, module: str) -> bool:
    done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, timeout=60)
    return done.returncode == 0


def test_normalised_requirements_ignore_comments_blank_lines_spacing_and_order():
    a = "numpy>=1.26\n# pinned\npandas ==2.2   # for frames\n\n"
    b = "pandas ==2.2\n\n   numpy>=1.26\n"
    assert normalise_requirements(a) == normalise_requirements(b) == "numpy>=1.26\npandas ==2.2"
    assert environment_key(a) == environment_key(b)
    assert environment_key(a) != environment_key(a + "scipy\n")
    assert re.fullmatch(r"[0-9a-f]{64}", environment_key(a))
    # pip joins backslash continuations and keeps '#' that is not after whitespace (URL fragments).
    continued = "pkg==1.0 \\\n    --hash=sha256:abc  # pinned\nhttps://h/p.zip#egg=p\n"
    assert normalise_requirements(continued) == "https://h/p.zip#egg=p\npkg==1.0 --hash=sha256:abc"


def test_no_requirements_means_the_base_environment(tmp_path: Path):
    with open(tmp_path / "build.log", "a") as log:
        env = ensure_environment(None, tmp_path / "envs", log)
        empty = tmp_path / "requirements.txt"
        empty.write_text("# nothing yet\n\n")
        also = ensure_environment(empty, tmp_path / "envs", log)
    assert env.python == also.python == Path(sys.executable)
    assert env.key == also.key == BASE_KEY
    assert not (tmp_path / "envs").exists()


def test_unreadable_requirements_are_refused(tmp_path: Path):
    binary = tmp_path / "requirements.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with open(tmp_path / "build.log", "a") as log, pytest.raises(InvalidInput, match="UTF-8"):
        ensure_environment(binary, tmp_path / "envs", log)


@pytest.mark.slow
def test_requirements_install_into_a_new_environment_reused_by_the_next_build(
    project: Writer, tiny_package: Path, modelyard_home: Path
):
    files = {"predict.py": USES_PACKAGE, "requirements.txt": f"--no-index\n{tiny_package}\n"}
    first = build(
        project(files), "predict.py", "predict", example={"x": 1}, requirements="requirements.txt"
    )
    assert first.ok, first.log_tail
    assert not first.environment_reused
    env_dir = modelyard_home / "builds" / "envs" / first.environment_key
    assert first.python == env_dir / "bin" / "python"
    assert re.search(r"Successfully installed modelyard[-_]tinypkg-1\.0", first.log_tail)
    assert '"value": 42, "x": 1, "sdk": "modelyard"' in first.log_tail

    # Other code, same requirements up to comments and order: the environment is reused.
    second_files = {
        "predict.py": USES_PACKAGE + "\n# a later version of the model\n",
        "requirements.txt": f"# local build of the helper package\n{tiny_package}\n\n--no-index\n",
    }
    second = build(
        project(second_files, "second"),
        "predict.py",
        "predict",
        example={"x": 2},
        requirements="requirements.txt",
    )
    assert second.ok, second.log_tail
    assert second.environment_reused and second.environment_key == first.environment_key
    assert second.digest != first.digest
    assert "Successfully installed" not in second.log_path.read_text()

    # The package lives in the build's environment only, never in the base environment.
    assert not _imports(Path(sys.executable), "modelyard_tinypkg")
    base = build(project(files, "third"), "predict.py", "predict", example={"x": 3})
    assert not base.ok
    assert "No module named 'modelyard_tinypkg'" in base.log_tail


@pytest.mark.slow
def test_an_interrupted_install_is_redone_not_reused(tiny_package: Path, tmp_path: Path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"--no-index\n{tiny_package}\n")
    log_path = tmp_path / "build.log"
    with open(log_path, "a") as log:
        env = ensure_environment(requirements, tmp_path / "envs", log)
        assert env.path is not None and not env.reused
        # As if the build had been killed after pip but before the environment was marked done.
        (env.path / ".modelyard-complete").unlink()
        again = ensure_environment(requirements, tmp_path / "envs", log)
        third = ensure_environment(requirements, tmp_path / "envs", log)
    assert not again.reused and third.reused
    assert again.python == env.python and _imports(again.python, "modelyard_tinypkg")
    assert "is incomplete (an earlier install stopped): redoing it" in log_path.read_text()


@pytest.mark.slow
def test_concurrent_builds_with_the_same_requirements_install_once(
    tiny_package: Path, tmp_path: Path
):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"--no-index\n{tiny_package}\n")
    results = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with open(tmp_path / f"build{i}.log", "a") as log:
                results.append(ensure_environment(requirements, tmp_path / "envs", log))
        except BaseException as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    in_threads(run, 3)
    assert not errors
    assert sorted(r.reused for r in results) == [False, True, True]
    assert len({r.python for r in results}) == 1
    assert _imports(results[0].python, "modelyard_tinypkg")


@pytest.mark.slow
def test_a_failed_install_fails_the_build_with_pips_error_and_keeps_nothing(
    project: Writer, modelyard_home: Path
):
    files = {
        "predict.py": "def predict(args):\n    return {}\n",
        "requirements.txt": "--no-index\nmodelyard-no-such-package==1.0\n",
    }
    result = build(
        project(files), "predict.py", "predict", example={}, requirements="requirements.txt"
    )
    assert not result.ok
    assert result.error is not None and "installing requirements.txt" in result.error
    assert "modelyard-no-such-package" in result.log_tail
    assert "smoke test" not in result.log_path.read_text()  # it never got that far
    envs = modelyard_home / "builds" / "envs"
    assert [p for p in envs.iterdir() if p.is_dir()] == []
