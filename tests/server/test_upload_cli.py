"""``modelyard models deploy --project-dir`` against a real server process reached by
``MODELYARD_URL`` (as from another machine): the folder is uploaded, a second deploy after one
change sends one file, and a requirements file outside the folder is refused before anything is
sent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from _cli import run_main as cli

from .conftest import ServerProcess

pytestmark = pytest.mark.slow


def test_cli_deploy_uploads_only_what_changed(
    server_process: Callable[[], ServerProcess],
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = server_process()
    monkeypatch.setenv("MODELYARD_URL", server.url)
    monkeypatch.setenv("MODELYARD_API_KEY", server.admin)
    monkeypatch.chdir(tmp_path)  # the CLI never sends a path: nothing depends on where it runs
    (project / "notes.txt").write_text("kept\n")
    (project / ".modelyardignore").write_text("*.secret\n")
    (project / "token.secret").write_text("never sent")

    code, out, err = cli(capsys, "models", "deploy", "remote", "--project-dir", str(project),
                         "--example", '{"x": 1}')  # fmt: skip
    assert code == 0, (out, err)
    assert "uploaded 3 new of 3 distinct files" in err  # predict.py, notes.txt, the ignore file

    predict = project / "predict.py"
    predict.write_text(predict.read_text().replace("* 2}", "* 5}"))
    code, out, err = cli(capsys, "models", "deploy", "remote", "--project-dir", str(project))
    assert code == 0, (out, err)
    assert "uploaded 1 new of 3 distinct files" in err
    answer = httpx.post(
        f"{server.url}/api/v1/models/remote/predict",
        json={"x": 2},
        headers={"Authorization": f"Bearer {server.admin}"},
        timeout=30,
    )
    assert answer.json()["response"]["prediction"] == {"double": 10}

    outside = tmp_path / "requirements.txt"
    outside.write_text("numpy\n")
    code, out, err = cli(capsys, "models", "deploy", "remote", "--project-dir", str(project),
                         "--requirements", str(outside))  # fmt: skip
    assert code == 2
    assert f"--requirements {str(outside)!r} is not inside --project-dir" in err
