"""A model's failed first deploy leaves nothing registered, and the deploy that does create it
shows its access key (the probe found six orphans, and ``access_key: null`` on the good deploy
after them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .conftest import Api


@pytest.mark.slow
def test_a_failed_first_deploy_leaves_no_model(
    with_api: Any, project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not the project's\n")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "predict.py").write_text("def predict(args):\n    return {}\n")
    os.symlink(outside, linked / "leak.txt")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "predict.py").write_text("raise RuntimeError('this build must fail')\n")
    attempts = [
        ({"project": "/"}, "root folder"),
        ({"project": "/usr"}, "system folder"),
        ({"project": str(linked)}, "symlink leading outside"),
        ({"project": str(project), "file": "missing.py"}, "missing file"),
        ({"project": str(broken)}, "build that fails"),
    ]

    async def scenario(api: Api) -> None:
        c, h = api.client, api.auth()
        for body, what in attempts:
            failed = await c.post("/api/v1/models/churn/deploy", json=body, headers=h)
            assert 400 <= failed.status_code < 500, (what, failed.text)
            listed = await c.get("/api/v1/models", headers=h)
            assert listed.json()["models"] == [], (what, listed.text)
            shown = await c.get("/api/v1/models/churn", headers=h)
            assert shown.status_code == 404, (what, shown.text)
        good = await c.post(
            "/api/v1/models/churn/deploy", json={"project": str(project)}, headers=h
        )
        assert good.status_code == 201, good.text
        key = good.json()["access_key"]
        assert isinstance(key, str) and key.startswith("mya_")
        called = await c.post(f"/model?accessKey={key}", json={"request": {"x": 2}}, headers=h)
        assert called.status_code == 200, called.text
        # A later deploy of the same model neither shows the key again nor loses the model when
        # it fails.
        again = await c.post(
            "/api/v1/models/churn/deploy", json={"project": str(broken)}, headers=h
        )
        assert again.status_code == 422, again.text
        assert (await c.get("/api/v1/models/churn", headers=h)).status_code == 200
        assert (
            await c.post(f"/model?accessKey={key}", json={"request": {"x": 2}}, headers=h)
        ).status_code == 200

    with_api(scenario)
