"""A monitor job's real run gets the secrets of the connections its spec names: the runner reads
the spec's ``labels.connection``, decrypts that connection's project secrets for the run (audited
by name) and the run's process reads its labels from MariaDB with the password it was given, as
an environment variable, through ``Credentials.from_env``. A connection whose secret is not set
fails the run before it starts, naming the secret."""

from __future__ import annotations

import textwrap
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from _live import admin_key, serve_app
from _services import mariadb
from _wait import wait_until
from modelyard.clock import now_ms
from modelyard.ids import new_prediction_uuid
from modelyard.runtime import free_port
from modelyard.server.app import create_app
from modelyard.store.base import Identity, Prediction
from modelyard.web.services import ServerConfig

from ._cast import stopped_deployment

pytestmark = pytest.mark.slow

PASSWORD = f"Run-pw-{uuidlib.uuid4().hex}"
N = 40


@pytest.fixture
def maria() -> Iterator[tuple[str, str]]:
    """A database with a ``labels`` table and a user who may read it with ``PASSWORD``."""
    conn = mariadb()
    tag = uuidlib.uuid4().hex[:8]
    database, user = f"h2run_{tag}", f"h2run_{tag}"
    with closing(conn), conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{database}`")
        cur.execute(
            f"CREATE TABLE `{database}`.labels (prediction_uuid CHAR(36), churned INT, "
            "updated_at BIGINT)"
        )
        for host in ("%", "localhost"):
            cur.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{PASSWORD}'")
            cur.execute(f"GRANT SELECT ON `{database}`.* TO '{user}'@'{host}'")
    try:
        yield database, user
    finally:
        with closing(mariadb()) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{database}`")
            for host in ("%", "localhost"):
                cur.execute(f"DROP USER '{user}'@'{host}'")


def _predictions(services: Any, project_crn: str) -> tuple[str, list[str]]:
    model, _, build, deployment = stopped_deployment(services.registry, "churn-run", project_crn)
    who = Identity(model.crn, build.crn, deployment.crn)
    start = now_ms() - 30 * 60_000
    uuids = [new_prediction_uuid() for _ in range(N)]
    services.store.write_predictions(
        [
            Prediction(u, who, start + i, start + i + 1, {"probability": (i % 10) / 10})
            for i, u in enumerate(uuids)
        ]
    )
    return deployment.crn, uuids


def _run(client: httpx.Client, job: str) -> dict[str, Any]:
    started = client.post(f"/api/v1/jobs/{job}/run")
    assert started.status_code == 202, started.text
    run = started.json()["uuid"]
    answer: dict[str, Any] = {}

    def ended() -> bool:
        answer.update(client.get(f"/api/v1/runs/{run}").json())
        return answer["state"] in {"succeeded", "failed", "timed_out", "cancelled"}

    wait_until(ended, timeout_s=120, step_s=0.2, what=f"run {run} of {job} to end")
    return {**answer, "log": client.get(f"/api/v1/runs/{run}/logs").text}


def _spec(folder: Path, name: str, deployment: str, connection: str) -> None:
    folder.mkdir(parents=True)
    (folder / "monitor.yaml").write_text(
        textwrap.dedent(f"""
        name: {name}
        deployment: {deployment}
        prediction: probability
        label: churned
        window: 1h
        metrics: [classification, label_coverage]
        min_labels: 1
        labels:
          connection: {connection}
          table: labels
          uuid_column: prediction_uuid
          columns: [churned]
          time_column: updated_at
        """)
    )


def test_a_monitor_run_gets_its_connections_secrets(
    modelyard_home: Path, tmp_path: Path, maria: tuple[str, str]
) -> None:
    database, user = maria
    port = free_port()
    app = create_app(ServerConfig(home=modelyard_home, port=port, inject_env=False))
    with serve_app(app, port) as url:
        services = app.state.services
        registry = services.registry
        project = registry.people.default_project().crn
        deployment, uuids = _predictions(services, project)
        with closing(mariadb(database=database)) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO labels VALUES (%s, %s, %s)",
                [(u, i % 2, 1_000 + i) for i, u in enumerate(uuids)],
            )
        registry.secrets.set(project, "MARIA_PW", PASSWORD, "admin")
        options = {"host": "127.0.0.1", "port": 3306, "database": database, "user": user}
        registry.connections.create(
            project, "maria", "mysql", options, {"password": "MARIA_PW"}, "admin"
        )
        registry.connections.create(
            project, "unset", "mysql", options, {"password": "NOT_SET_PW"}, "admin"
        )
        headers = {"Authorization": f"Bearer {admin_key(modelyard_home)}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for name, connection in (("labels-run", "maria"), ("unset-run", "unset")):
                _spec(tmp_path / name, name, deployment, connection)
                body = {
                    "name": name,
                    "project": str(tmp_path / name),
                    "monitor": "monitor.yaml",
                    "manual": True,
                }
                made = client.post("/api/v1/jobs", json=body)
                assert made.status_code == 201, made.text
            done = _run(client, "labels-run")
            failed = _run(client, "unset-run")
        assert done["state"] == "succeeded", done["log"]
        (imported,) = registry.labels.imports("labels-run")
        assert (imported.rows_read, imported.matched, imported.error) == (N, N, None)
        reads = [e for e in registry.audit.list(project_crn=project) if e.action == "secrets.read"]
        assert [(e.object, e.details["names"]) for e in reads] == [("labels-run", ["MARIA_PW"])]
        assert failed["state"] == "failed"
        assert "'NOT_SET_PW' not set in project 'admin/default'" in failed["log"]
        assert PASSWORD not in done["log"] + failed["log"]
