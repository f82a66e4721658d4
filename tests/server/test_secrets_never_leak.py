"""A secret's value reaches the replica and the run that name it, and nothing else: a model and a
job get ``DB_PASSWORD`` from the project's secrets (the model answers its SHA-256, the job writes
its SHA-256 to a file outside the home), then every file under the home (logs, builds and
snapshots, the SQLite database and its WAL), every answer the test got, the server's log records,
the audit table and the snapshot archive tables are searched for the value: not one hit. Neither
the model nor the job prints the value, so the proof cannot leak it either.

Also: a deploy naming a missing secret fails before it builds, naming the secret and the project
(the new model is not left behind); a run naming one fails with the reason in its log; each read
for a replica or a run is in the audit log with the names only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelyard.registry._db import Db
from server.conftest import Api

VALUE = "Zq8-unique-secret-\u00e9\u00e8-7f3a91c2d4"
DIGEST = hashlib.sha256(VALUE.encode()).hexdigest()

PREDICT = """
import hashlib
import os


def predict(args):
    print("predict called", flush=True)
    value = os.environ.get("DB_PASSWORD", "")
    return {"sha256": hashlib.sha256(value.encode()).hexdigest(), "length": len(value)}
"""

JOB = """
import hashlib
import os
import pathlib

value = os.environ["DB_PASSWORD"]
pathlib.Path(os.environ["OUT"]).write_text(hashlib.sha256(value.encode()).hexdigest())
print("wrote the digest", flush=True)
"""


def _folder(root: Path, name: str, text: str) -> Path:
    root.mkdir(parents=True)
    (root / name).write_text(textwrap.dedent(text))
    return root


async def _wait_run(api: Api, uuid: str, seen: list[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        answer = await api.client.get(f"/api/v1/runs/{uuid}", headers=api.auth())
        seen.append(answer.text)
        if answer.json()["state"] in {"succeeded", "failed", "timed_out", "cancelled"}:
            shown: dict[str, Any] = answer.json()
            return shown
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(0.1)


def _rows(api: Api, table: str) -> bytes:
    """Every row of ``table`` as bytes (text and blob columns alike)."""
    db = Db(api.services.store)
    with db.read() as cur:
        rows = db.exec(cur, f"SELECT * FROM {table}").fetchall()
    out = bytearray()
    for row in rows:
        for cell in row:
            out += bytes(cell) if isinstance(cell, bytes | memoryview) else str(cell).encode()
            out += b"\x1f"
    return bytes(out)


def _hits(data: bytes) -> bool:
    return VALUE.encode() in data or VALUE.encode("utf-16-le") in data


async def _scenario(api: Api, tmp: Path, seen: list[str]) -> None:
    c, h = api.client, api.auth()
    project = api.services.registry.people.default_project()
    base = f"/api/v1/projects/{project.crn.rsplit('/', 1)[-1]}/secrets"

    async def ok(answer: Any, status: int = 200) -> Any:
        seen.append(answer.text)
        assert answer.status_code == status, answer.text
        json = answer.headers.get("content-type", "").startswith("application/json")
        return answer.json() if json else answer.text

    await ok(await c.put(f"{base}/DB_PASSWORD", json={"value": VALUE}, headers=h))

    model = _folder(tmp / "vault", "predict.py", PREDICT)
    missing = await c.post(
        "/api/v1/models/vault/deploy",
        json={"project": str(model), "secrets": ["DB_PASSWORD", "NOPE"]},
        headers=h,
    )
    seen.append(missing.text)
    assert missing.status_code == 404, missing.text
    assert "'NOPE' not set in project 'admin/default'" in missing.text
    assert (await c.get("/api/v1/models/vault", headers=h)).status_code == 404  # not left behind

    body = {"project": str(model), "secrets": ["DB_PASSWORD"], "example": {}}
    outcome = await ok(await c.post("/api/v1/models/vault/deploy", json=body, headers=h), 201)
    assert outcome["deployment"]["secrets"] == ["DB_PASSWORD"]
    answer = await ok(await c.post("/api/v1/models/vault/predict", json={}, headers=h))
    assert answer["response"] == {"sha256": DIGEST, "length": len(VALUE)}, answer
    await ok(await c.get("/api/v1/models/vault", headers=h))
    assert "predict called" in await ok(await c.get("/api/v1/models/vault/logs", headers=h))

    out = tmp / "outside" / "digest.txt"
    out.parent.mkdir()
    script = _folder(tmp / "job", "hello.py", JOB)
    job = {
        "name": "uses-secret",
        "project": str(script),
        "script": "hello.py",
        "manual": True,
        "env": {"OUT": str(out)},
        "secrets": ["DB_PASSWORD"],
    }
    created = await ok(await c.post("/api/v1/jobs", json=job, headers=h), 201)
    assert created["job"]["secrets"] == ["DB_PASSWORD"]
    run = await ok(await c.post("/api/v1/jobs/uses-secret/run", headers=h), 202)
    done = await _wait_run(api, run["uuid"], seen)
    assert done["state"] == "succeeded", done
    assert out.read_text() == DIGEST  # the run saw the value
    assert "wrote the digest" in await ok(
        await c.get(f"/api/v1/runs/{run['uuid']}/logs", headers=h)
    )

    lacking = {**job, "name": "lacks-secret", "secrets": ["NOPE"]}
    await ok(await c.post("/api/v1/jobs", json=lacking, headers=h), 201)
    run = await ok(await c.post("/api/v1/jobs/lacks-secret/run", headers=h), 202)
    assert (await _wait_run(api, run["uuid"], seen))["state"] == "failed"
    log = await c.get(f"/api/v1/runs/{run['uuid']}/logs", headers=h)
    seen.append(log.text)
    assert "'NOPE' not set in project 'admin/default'" in log.text

    reads = [
        e
        for e in api.services.registry.audit.list(project_crn=project.crn)
        if e.action == "secrets.read"
    ]
    assert {(e.actor, e.object, tuple(e.details["names"])) for e in reads} == {
        ("system", "vault", ("DB_PASSWORD",)),
        ("system", "uses-secret", ("DB_PASSWORD",)),
    }
    assert {e.details["for"] for e in reads} == {outcome["deployment"]["crn"], done["id"]}
    tables = ("audit_log", "snapshot_archives", "snapshot_chunks", "deployments", "jobs")
    assert [t for t in tables if _hits(_rows(api, t))] == [], "tables hold the value"
    assert b"DB_PASSWORD" in _rows(api, "deployments")  # the names are there: the search works
    # A secret deleted after the deploy: the next replica cannot start, and says why.
    await ok(await c.delete(f"{base}/DB_PASSWORD", headers=h), 204)
    scaled = await c.post("/api/v1/models/vault/scale", json={"replicas": 2}, headers=h)
    seen.append(scaled.text)
    assert scaled.status_code == 503, scaled.text
    assert "'DB_PASSWORD' not set in project 'admin/default'" in scaled.text
    await ok(await c.post("/api/v1/models/vault/stop", headers=h))


def test_a_secret_reaches_its_replica_and_run_and_nothing_else(
    with_api: Callable[..., Any],
    modelyard_home: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    async def scenario(api: Api) -> None:
        await _scenario(api, tmp_path / "work", seen)

    with_api(scenario)
    assert len(seen) > 15
    # Failures name where, never show the text (it would print the value).
    assert [i for i, text in enumerate(seen) if _hits(text.encode())] == [], "answers leak"
    logged = _hits(caplog.text.encode())
    assert logged is False, "a server log record holds the value"
    searched = [p for p in modelyard_home.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".log" for p in searched) and any("builds" in p.parts for p in searched)
    leaks = [str(p) for p in searched if _hits(p.read_bytes())]
    assert leaks == [], "files under the home hold the value"
