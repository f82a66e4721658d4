"""``PUT /api/v1/runs/{uuid}/files/{path}``: the bytes of a file a running experiment tracked,
sent by the SDK when the script ends (``tracking.run_uploads``), so its files are kept wherever
it ran (on Ray, a node's copy of the folder the runner never sees).

In-process (the real app, SQLite and PostgreSQL; runs put in the running state directly, no
scheduler): bytes kept, idempotent, the limits, a path out of the folder, a wrong run's key, an
ended run, a job's run. One real server process (slow): a script run as an experiment tracks a
file and removes it after the SDK sent it, so the runner finds nothing in its folder and the
kept bytes can only have come through the upload; a second script dies with ``os._exit`` before
its exit hooks, and the runner still keeps its file from the folder (local runtime)."""

from __future__ import annotations

import hashlib
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.cli.uploading import upload_folder
from modelyard.client import Client
from modelyard.registry import (
    MAX_RUN_FILE_BYTES,
    MAX_RUN_FILES,
    MAX_RUN_FILES_TOTAL_BYTES,
    RunState,
)
from modelyard.registry import _experiments as experiments_module
from modelyard.server.body_limit import BodyLimits
from modelyard.specs.experiment import ExperimentSpec
from modelyard.specs.job import JobSpec
from modelyard.tracking import run_uploads
from modelyard.web.audit import audited

from .conftest import Api, ServerProcess


def _running(api: Api, folder: Path) -> tuple[str, str, str]:
    """A running experiment run: (run id, uuid, its own key)."""
    registry = api.services.registry
    (folder / "train.py").write_text("print('hi')\n")
    job = registry.experiments.create(
        ExperimentSpec(script="train.py", project=str(folder)), None, "admin"
    )
    run = registry.create_run(job.id, 0, 1, "manual")
    registry.update_run(run.id, state=RunState.RUNNING, started_ms=1)
    _, key = registry.create_api_key("a run", role="run", scope=run.id)
    return run.id, run.id.rsplit("/", 1)[-1], key


def test_the_route_keeps_the_bytes_once_and_applies_the_checks(
    with_api: Any, database: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(api: Api) -> None:
        registry, c = api.services.registry, api.client
        run_id, uuid, key = _running(api, tmp_path)
        other_id, other_uuid, other_key = _running(api, tmp_path)
        own = {"Authorization": f"Bearer {key}"}
        data = bytes(range(256)) * 40
        registry.experiments.track_file(run_id, "out/model.bin")  # what track_file posted first
        for _ in range(2):  # idempotent: the same bytes again change nothing
            put = await c.put(f"/api/v1/runs/{uuid}/files/out/model.bin", content=data, headers=own)
            assert put.status_code == 200, put.text
            shown = put.json()
            assert (shown["path"], shown["state"], shown["size"]) == (
                "out/model.bin",
                "kept",
                10240,
            )
            assert shown["sha256"] == hashlib.sha256(data).hexdigest() and shown["error"] is None
        assert registry.experiments.file_data(run_id, "out/model.bin") == data
        assert [f.path for f in registry.experiments.files(run_id)] == ["out/model.bin"]
        got = await c.get(f"/api/v1/experiments/{uuid}/files/out/model.bin", headers=api.auth())
        assert got.content == data

        # Another run's key may not send files of this run (an unknown run to it); an operator may.
        wrong = await c.put(
            f"/api/v1/runs/{uuid}/files/x.bin",
            content=b"x",
            headers={"Authorization": f"Bearer {other_key}"},
        )
        assert wrong.status_code == 404, wrong.text
        by_admin = await c.put(
            f"/api/v1/runs/{other_uuid}/files/a b/é.txt", content=b"ok", headers=api.auth()
        )
        assert by_admin.status_code == 200 and by_admin.json()["path"] == "a b/é.txt"

        # (percent-encoded: a client would otherwise resolve the dots itself)
        for path in ("%2E%2E/etc/passwd", "out/%2E%2E/%2E%2E/x"):
            bad = await c.put(f"/api/v1/runs/{uuid}/files/{path}", content=b"x", headers=own)
            assert bad.status_code == 400, bad.text
            assert "leaves the run's working folder" in bad.text, bad.text
        bad_run = await c.put("/api/v1/runs/abcd/files/x.bin", content=b"x", headers=api.auth())
        assert bad_run.status_code == 404, bad_run.text  # no such run

        # One byte over the per-file limit: refused as the bytes arrive, nothing kept.
        big = await c.put(
            f"/api/v1/runs/{uuid}/files/big.bin",
            content=b"\0" * (MAX_RUN_FILE_BYTES + 1),
            headers=own,
        )
        assert big.status_code == 413, big.text
        assert f"at most {MAX_RUN_FILE_BYTES} bytes" in big.text and "big.bin" in big.text
        assert [f.path for f in registry.experiments.files(run_id)] == ["out/model.bin"]

        # Files per run: the run's 100 files (tracked or kept) are all it may have.
        for n in range(MAX_RUN_FILES - 1):
            registry.experiments.track_file(run_id, f"f{n}.txt")
        over = await c.put(f"/api/v1/runs/{uuid}/files/one-more.txt", content=b"1", headers=own)
        assert over.status_code == 400 and f"at most {MAX_RUN_FILES} files" in over.text
        again = await c.put(f"/api/v1/runs/{uuid}/files/f0.txt", content=b"0", headers=own)
        assert again.status_code == 200  # a tracked file is not one more

        # Bytes per run (256 MiB, made 10 bytes here): the other run has 2 kept already.
        monkeypatch.setattr(experiments_module, "MAX_RUN_FILES_TOTAL_BYTES", 10)
        full = await c.put(
            f"/api/v1/runs/{other_uuid}/files/last.bin", content=b"9" * 9, headers=api.auth()
        )
        assert full.status_code == 413 and "at most 10 bytes" in full.text, full.text
        assert [f.path for f in registry.experiments.files(other_id)] == ["a b/é.txt"]

        # An ended run takes no more files; a job's run is not an experiment.
        registry.update_run(run_id, state=RunState.SUCCEEDED, ended_ms=2)
        ended = await c.put(f"/api/v1/runs/{uuid}/files/late.txt", content=b"x", headers=api.auth())
        assert ended.status_code == 409 and "succeeded" in ended.text
        spec = JobSpec.parse(
            {"name": "nightly", "project": str(tmp_path), "script": "train.py", "manual": True}
        )
        job = registry.create_job(spec)
        job_run = registry.create_run(job.id, 0, 1, "manual")
        registry.update_run(job_run.id, state=RunState.RUNNING, started_ms=1)
        not_one = await c.put(
            f"/api/v1/runs/{job_run.id.rsplit('/', 1)[-1]}/files/x.txt",
            content=b"x",
            headers=api.auth(),
        )
        assert not_one.status_code == 404 and "not an experiment run" in not_one.text

    with_api(scenario, jobs=False, **database)


def test_the_body_cap_and_the_audit_trail_leave_room_for_a_run_file() -> None:
    limits = BodyLimits(request_bytes=2 * 1024 * 1024, batch_bytes=1, record_bytes=1)
    uuid = "0b7e0000-0000-4000-8000-000000000000"
    cap, setting = limits.limit_for(f"/api/v1/runs/{uuid}/files/out/model.bin")
    assert cap == MAX_RUN_FILE_BYTES + 1024 * 1024 and "experiment run" in setting
    assert limits.limit_for(f"/api/v1/runs/{uuid}/files")[0] == 2 * 1024 * 1024
    assert not audited("PUT", f"/api/v1/runs/{uuid}/files/out/model.bin")
    assert audited("PUT", "/api/v1/projects/p/secrets/files")
    sdk = (run_uploads.MAX_RUN_FILE_BYTES, run_uploads.MAX_RUN_FILES)
    assert (*sdk, run_uploads.MAX_RUN_FILES_TOTAL_BYTES) == (
        MAX_RUN_FILE_BYTES,
        MAX_RUN_FILES,
        MAX_RUN_FILES_TOTAL_BYTES,
    )


SENT = """
import atexit, os
from pathlib import Path
import modelyard

# Registered before track_file, so it runs after the SDK's exit hook sent the file: the runner
# then finds nothing in its folder, as on Ray, where the script writes on another machine.
atexit.register(os.remove, "model.bin")
Path("model.bin").write_bytes(b"an early version")
modelyard.track_file("model.bin")
Path("gone.txt").write_text("deleted before the end")
modelyard.track_file("gone.txt")
os.remove("gone.txt")
Path("model.bin").write_bytes(bytes(range(256)) * 4)  # kept as it is at the end
print("trained", flush=True)
"""

KILLED = """
import os
from pathlib import Path
import modelyard

Path("model.bin").write_bytes(b"kept by the runner")
modelyard.track_file("model.bin")
os._exit(0)  # no exit hooks: nothing sent
"""


@pytest.mark.slow
def test_a_real_experiment_sends_its_files_when_the_script_ends(
    server_process: Callable[[], ServerProcess], tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "sent.py").write_text(textwrap.dedent(SENT))
    (folder / "killed.py").write_text(textwrap.dedent(KILLED))
    server = server_process()
    upload = upload_folder(Client(server.url, server.admin), folder, None)
    headers = {"Authorization": f"Bearer {server.admin}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        uuids = []
        for script in ("sent.py", "killed.py"):
            answer = http.post("/api/v1/experiments", json={"script": script, "upload": upload.id})
            assert answer.status_code == 201, answer.text
            uuids.append(answer.json()["uuid"])
        shown = [_finished(http, uuid) for uuid in uuids]
        logs = [http.get(f"/api/v1/experiments/{uuid}/logs").text for uuid in uuids]

    sent, killed = shown
    assert sent["state"] == "succeeded", logs[0]
    files = {f["path"]: f for f in sent["files"]}
    assert (files["model.bin"]["state"], files["model.bin"]["size"]) == ("kept", 1024), logs[0]
    assert "kept file model.bin (1024 bytes" in logs[0]
    assert "sent by the script when it ended" in logs[0]
    assert "file 'gone.txt' of run" in logs[0] and "was not sent to the server" in logs[0]
    assert "it does not exist when the script ended" in logs[0]
    assert files["gone.txt"]["state"] == "failed"
    assert "does not exist when the run ended" in files["gone.txt"]["error"]
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        data = http.get(f"/api/v1/experiments/{uuids[0]}/files/model.bin").content
        assert data == bytes(range(256)) * 4

    assert killed["state"] == "succeeded", logs[1]
    assert [(f["path"], f["state"], f["size"]) for f in killed["files"]] == [
        ("model.bin", "kept", 18)
    ]
    assert "kept file model.bin (18 bytes" in logs[1] and "sent by the script" not in logs[1]


def _finished(http: httpx.Client, uuid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while (shown := http.get(f"/api/v1/experiments/{uuid}").json())["state"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    return shown
