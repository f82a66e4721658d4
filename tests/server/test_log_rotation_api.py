"""A run's log rotated while it runs reads and follows whole through the REST API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from modelyard.runtime.logs import log_files

from .conftest import Api

CHATTY = """
import time
for i in range(600):
    print("line", i, "x" * 40, flush=True)
    time.sleep(0.005)
"""


def _numbers(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith("line ")]


@pytest.mark.slow
def test_a_followed_run_log_goes_on_across_rotations(
    with_api: Any, tmp_path: Path, modelyard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_LOG_MAX_BYTES", "4K")
    monkeypatch.setenv("MODELYARD_LOG_BACKUPS", "50")
    project = tmp_path / "chatty"
    project.mkdir()
    (project / "chatty.py").write_text(CHATTY)

    async def scenario(api: Api) -> None:
        c = api.client
        body = {"name": "chatty", "project": str(project), "script": "chatty.py", "manual": True}
        assert (await c.post("/api/v1/jobs", json=body, headers=api.auth())).status_code == 201
        run = (await c.post("/api/v1/jobs/chatty/run", headers=api.auth())).json()
        followed = await asyncio.wait_for(
            c.get(f"/api/v1/runs/{run['uuid']}/logs?follow=1", headers=api.auth()), 60
        )
        assert followed.status_code == 200, followed.text
        numbers = _numbers(followed.text)
        assert numbers == sorted(set(numbers)) and numbers[-1] == 599, numbers[-5:]
        path = modelyard_home / "logs" / "runs" / f"{run['uuid']}.log"
        assert len(log_files(path)) >= 3, "the run log was not rotated"
        # Read afterwards, the whole log starts in the oldest copy; a tail crosses copies.
        whole = await c.get(f"/api/v1/runs/{run['uuid']}/logs", headers=api.auth())
        assert whole.text == followed.text
        tail = await c.get(f"/api/v1/runs/{run['uuid']}/logs?tail=300", headers=api.auth())
        assert tail.text.splitlines() == followed.text.splitlines()[-300:]

    with_api(scenario)
