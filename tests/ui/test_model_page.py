"""The model page opens any build's log (a failed build's especially), over the real app with a
real build and replica."""

from __future__ import annotations

import html
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .conftest import Ui

pytestmark = pytest.mark.slow

GOOD = """
def predict(args):
    return {"double": args["x"] * 2}
"""
BROKEN = """
raise RuntimeError("the broken build's own words")
"""


def test_the_model_page_shows_a_failed_builds_log(with_ui: Any, tmp_path: Path) -> None:
    async def scenario(ui: Ui) -> None:
        project = tmp_path / "churn"
        project.mkdir()
        auth = {"Authorization": f"Bearer {ui.admin}"}
        for code in (GOOD, BROKEN):
            (project / "predict.py").write_text(textwrap.dedent(code))
            await ui.client.post(
                "/api/v1/models/churn/deploy",
                json={"project": str(project), "example": {"x": 3}, "replicas": 1},
                headers=auth,
                timeout=300,
            )
        status = (await ui.client.get("/api/v1/models/churn", headers=auth)).json()
        failed = [b["crn"].rsplit("/", 1)[-1] for b in status["builds"] if not b["ok"]]
        assert len(failed) == 1, status["builds"]
        await ui.sign_in()
        default = await ui.client.get("/ui/models/churn")
        assert default.status_code == 200
        assert "the broken build&#39;s own words" not in default.text  # the active build's log
        assert f"?log={failed[0]}#h-log" in html.unescape(default.text)  # a link per build
        page = await ui.client.get("/ui/models/churn", params={"log": failed[0]})
        assert page.status_code == 200
        assert "the broken build's own words" in html.unescape(page.text)
        wrong = await ui.client.get("/ui/models/churn", params={"log": "nope"})
        assert wrong.status_code == 400 and failed[0] in wrong.text and "nope" in wrong.text

    with_ui(scenario)
