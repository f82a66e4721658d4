"""``store copy``: every table across, SQLite to PostgreSQL and back, resumable, counted, refused
when it would be wrong. Real databases: SQLite files and a fresh PostgreSQL schema per test."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from cryptography.fernet import Fernet

from modelyard.errors import Conflict, InvalidInput
from modelyard.registry import Registry, SecretBox
from modelyard.registry._labels import ImportRecord
from modelyard.specs import JobSpec
from modelyard.specs.experiment import ExperimentSpec
from modelyard.store import (
    Identity,
    MetricsStore,
    Prediction,
    Query,
    RollupPolicy,
    open_store,
    sqlaccess,
)
from modelyard.store.copy import CountMismatch, copy_store
from modelyard.store.copysql import MARKER, MIGRATIONS, PostgresSide, Side, SQLiteSide, ident
from modelyard.store.schema import SCHEMA_VERSION, migrations

DAY = 86_400_000
NOW = int(time.time() * 1000)


# -- a store with rows in every table ---------------------------------------------------------
def _fill(store: MetricsStore, predictions: int = 300) -> dict[str, Any]:
    """Rows in every table the migrations create, written through the public APIs where there
    is one; returns the tokens and identity the checks need."""
    from modelyard.monitors.access import EmbeddedAccess
    from modelyard.monitors.references import upload_reference

    registry = Registry(store)
    model, access_key = registry.create_model("churn")
    build = registry.add_build(
        "churn",
        digest="d1",
        file="predict.py",
        function="predict",
        python=sys.executable,
        env_key="env1",
        ok=True,
        example={"x": 1},
    )
    registry.add_build(
        "churn",
        digest="d2",
        file="predict.py",
        function="predict",
        python=sys.executable,
        env_key="env2",
        ok=False,
        error="SyntaxError: invalid syntax",
    )
    deployment = registry.add_deployment("churn", build.crn, replicas=2, cpus=0.5)
    _, token = registry.create_api_key("alice", role="user")
    revoked, _ = registry.create_api_key("bob", role="user")
    registry.revoke_api_key(revoked.id)
    registry.record_event(deployment.crn, "r1", "started", {"pid": 1})
    # A child whose id sorts before its parent's: key order alone would insert it first.
    first = registry.create_job(
        JobSpec(name="first", project="/srv/project", script="train.py", cron="0 * * * *")
    )
    second = registry.create_job(
        JobSpec(name="second", project="/srv/project", script="score.py", cron="0 * * * *")
    )
    parent, child = (first, second) if first.id > second.id else (second, first)
    registry.update_job(child.name, after=parent.name)
    registry.claim_slot(parent.id, NOW - NOW % 3_600_000, 1, "scheduler-1", 60_000)
    run = registry.create_run(parent.id, NOW - NOW % 3_600_000, 1, "schedule")
    registry.add_run_metrics(run.id, {"loss": 0.25, "epochs": 3})
    # An experiment run (schema 10) with a kept file (bytes) and a failed one.
    experiment = registry.experiments.create(
        ExperimentSpec(script="fit.py", project="/srv/project", label="depth 3", cpus=2), None
    )
    tried = registry.create_run(experiment.id, NOW, 1, "manual")
    registry.experiments.set_code_digest(tried.id, "cd" * 32)
    registry.experiments.keep_file(tried.id, "model.pkl", b"\x80\x04model\x00bytes")
    registry.experiments.fail_file(tried.id, "gone.csv", "it does not exist when the run ended")
    # A build snapshot's archive in two chunks (a server on the copied database fetches it).
    registry.snapshots.put(
        "ab" * 32, [b"first chunk", b"second chunk"], "modelyard-snapshot-archive-1"
    )

    who = Identity(model.crn, build.crn, deployment.crn)
    old = NOW - 40 * DAY
    batch = [
        Prediction(str(uuidlib.uuid4()), who, old + i * 60_000, old + i * 60_000 + 3, {"p": i / 7})
        for i in range(predictions // 2)
    ] + [
        Prediction(
            str(uuidlib.uuid4()),
            who,
            NOW - i * 1000,
            NOW - i * 1000 + 2,
            {"p": i / 9, "region": "north" if i % 2 else "south", "nan": None},
        )
        for i in range(predictions - predictions // 2)
    ]
    store.write_predictions(batch)
    store.add_delayed(batch[0].uuid, {"truth": 1}, source="labels")  # rolled up below
    store.add_delayed(batch[-1].uuid, {"truth": 0}, source="labels")  # stays raw
    store.add_aggregate(deployment.crn, NOW - DAY, NOW, {"accuracy": 0.91})
    store.rollup(RollupPolicy(raw_horizon_ms=30 * DAY), now_ms=NOW)

    frame = pd.DataFrame({"p": [0.1, 0.5, 0.9], "region": ["north", "south", "north"]})
    upload_reference(frame, deployment.crn, store=store)
    access = EmbeddedAccess(store)
    access.save(
        "churn-monitor",
        "monitor:churn-monitor",
        deployment.crn,
        NOW - DAY,
        NOW,
        3,
        {"accuracy": 0.8, "labelled": 2},
    )
    access.save_mark("churn-monitor", deployment.crn, NOW)
    sqlaccess.transaction(
        store,
        lambda cur: cur.execute(
            sqlaccess.sql(
                store,
                "INSERT INTO alerts (monitor, deployment_crn, rule, state, "
                "first_window_start_ms, last_window_end_ms, value, breaching, fired_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            (
                "churn-monitor",
                deployment.crn,
                "accuracy < 0.9",
                "firing",
                NOW - DAY,
                NOW,
                0.8,
                "[]",
                NOW,
            ),
        ),
    )
    # People (schema 9): the first start's admin and default project (the rows above move into
    # them), a user, a team with a member, a project with a user and a team as collaborators.
    people = registry.people
    people.bootstrap(admin_password="the copied admin's password")
    people.create_user("carol", email="carol@example.com", password="carol's password")
    people.create_team("analysts")
    people.add_member("analysts", "carol")
    project = people.create_project("fraud", owner="carol")
    people.set_collaborator(project.crn, "user", "admin", "viewer")
    people.set_collaborator(project.crn, "team", "analysts", "operator")
    # The audit log, a secret (its ciphertext copies as bytes) and an upload with its blob.
    registry.audit.record("carol", "models.deploy", object="churn", project_crn=project.crn)
    registry.secrets.configure(SecretBox(keys=Fernet.generate_key().decode()))
    registry.secrets.set(project.crn, "CRM_PASSWORD", "hunter2-but-longer", "carol")
    blob = b"def predict(x):\n    return x\n"
    digest = hashlib.sha256(blob).hexdigest()
    registry.uploads.put_blob(digest, blob)
    registry.uploads.create(
        [{"path": "predict.py", "sha256": digest, "size": len(blob), "mode": 0o644}], "carol"
    )
    # A connection (options in the clear, a secret by name), and a label import with the
    # watermark it advanced to.
    registry.connections.create(
        project.crn,
        "crm",
        "postgresql",
        {"host": "db.internal", "database": "crm"},
        {"password": "CRM_PASSWORD"},
        "carol",
    )
    registry.labels.record(
        "churn-monitor",
        project.crn,
        ImportRecord(
            "churn-monitor",
            "crm",
            NOW,
            NOW + 5,
            rows_read=3,
            matched=2,
            unmatched=1,
            unmatched_sample=("ghost",),
            watermark_after="2026-11-01T00:00:00+00:00",
        ),
        advance_to="2026-11-01T00:00:00+00:00",
    )
    return {"token": token, "access_key": access_key, "who": who, "uuids": [p.uuid for p in batch]}


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but schema_migrations, in a backend-neutral, sorted form."""
    with open_store(url) as store, sqlaccess.reading(store) as cur:
        if sqlaccess.dialect(store) == "sqlite":
            cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        tables = sorted(r[0] for r in cur.fetchall() if r[0] not in (MIGRATIONS, MARKER))
        out = {}
        for table in tables:
            cur.execute(f"SELECT * FROM {ident(table)}")
            names = [d[0] for d in cur.description]
            rows = [tuple(sorted(zip(names, map(_plain, r), strict=True))) for r in cur.fetchall()]
            out[table] = sorted(rows, key=repr)
    return out


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path: four slashes


@pytest.fixture
def source_home(modelyard_home: Path) -> Iterator[Path]:
    with open_store() as store:  # the home's own SQLite store
        _fill(store)
    yield modelyard_home


# -- both ways ---------------------------------------------------------------------------------
@pytest.mark.postgres
def test_sqlite_to_postgresql_and_back_copies_every_row_of_every_table(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "old-home"
    with open_store(_sqlite_url(home / "modelyard.db")) as store:
        filled = _fill(store)
    source = _dump(_sqlite_url(home / "modelyard.db"))
    empty = [table for table, rows in source.items() if not rows]
    assert empty == [], f"the fixture leaves tables empty, so their copy is not tested: {empty}"

    # Small batches: a child job would come before its parent (and fail its foreign key) if
    # the jobs table were batched like the others.
    report = copy_store(str(home), postgres_schema_url, batch_size=1)
    assert report.ok and not report.resumed and report.schema_version == SCHEMA_VERSION
    assert {t.table for t in report.tables} == set(source)
    assert all(t.source == t.target == t.copied == len(source[t.table]) for t in report.tables)
    assert _dump(postgres_schema_url) == source

    # Back again, into a new home given as a folder.
    back = copy_store(postgres_schema_url, str(tmp_path / "new-home"))
    assert back.ok and back.target == str(tmp_path / "new-home" / "modelyard.db")
    assert _dump(_sqlite_url(tmp_path / "new-home" / "modelyard.db")) == source
    assert oct((tmp_path / "new-home").stat().st_mode & 0o777) == "0o700"

    # The copy works as a store, not only as rows: keys (copied as hashes) still authenticate,
    # reads see the same records, and new rows get ids after the copied ones.
    with open_store(postgres_schema_url) as store:
        registry = Registry(store)
        assert registry.authenticate(filled["token"]).name == "alice"
        assert registry.model_by_access_key(filled["access_key"]).name == "churn"
        records, _ = store.read(Query(deployment_crn=filled["who"].deployment_crn))
        assert len([r for r in records if r.kind.value == "prediction"]) == 150
        registry.create_model("another")
        registry.add_build(
            "another",
            digest="d",
            file="f.py",
            function="predict",
            python=sys.executable,
            env_key="e",
            ok=True,
        )
        store.register_identity(Identity("crn:m/2", "crn:b/2", "crn:d/2"))
        store.add_aggregate(filled["who"].deployment_crn, NOW, NOW, {"n": 1})
        registry.record_event(filled["who"].deployment_crn, "r2", "started")
    with open_store(_sqlite_url(tmp_path / "new-home" / "modelyard.db")) as store:
        assert Registry(store).authenticate(filled["token"]).name == "alice"
        store.add_aggregate(filled["who"].deployment_crn, NOW, NOW, {"n": 1})


@pytest.mark.postgres
def test_postgresql_identity_sequences_continue_after_the_copied_ids(
    source_home: Path, postgres_schema_url: str
) -> None:
    report = copy_store(None, postgres_schema_url)
    assert {"aggregates.id", "identities.id", "builds.seq", "job_runs.seq"} <= set(report.sequences)
    with open_store(postgres_schema_url) as store, sqlaccess.reading(store) as cur:
        cur.execute("SELECT MAX(id) FROM aggregates")
        copied_max = cur.fetchone()[0]
    with open_store(postgres_schema_url) as store:
        store.add_aggregate(_any_deployment(store), NOW, NOW, {"n": 1})
        with sqlaccess.reading(store) as cur:
            cur.execute("SELECT MAX(id) FROM aggregates")
            assert cur.fetchone()[0] == copied_max + 1


def _any_deployment(store: MetricsStore) -> str:
    with sqlaccess.reading(store) as cur:
        cur.execute("SELECT deployment_crn FROM identities")
        return str(cur.fetchone()[0])


# -- resuming ----------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def _stop_after(batches: int) -> Any:
    seen = {"n": 0}

    def progress(table: str, copied: int, total: int) -> None:
        if table == "prediction_uuids" and 0 < copied < total:
            seen["n"] += 1
            if seen["n"] >= batches:
                raise _Stop(f"stopped in {table} at {copied} of {total}")

    return progress


@pytest.mark.postgres
@pytest.mark.parametrize("direction", ["sqlite-to-postgresql", "postgresql-to-sqlite"])
def test_an_interrupted_copy_run_again_continues_without_duplicates_or_losses(
    direction: str, postgres_schema_url: str, tmp_path: Path
) -> None:
    sqlite_url = _sqlite_url(tmp_path / "a.db")
    if direction == "sqlite-to-postgresql":
        source, target = sqlite_url, postgres_schema_url
    else:
        source, target = postgres_schema_url, sqlite_url
    with open_store(source) as store:
        _fill(store, predictions=2000)
    expected = _dump(source)

    with pytest.raises(_Stop):
        copy_store(source, target, batch_size=100, progress=_stop_after(3))
    partial = _dump(target)
    assert 0 < len(partial["prediction_uuids"]) < len(expected["prediction_uuids"])
    assert partial["models"] == expected["models"]  # tables before it are complete

    report = copy_store(source, target, batch_size=100)
    assert report.ok and report.resumed
    uuids = next(t for t in report.tables if t.table == "prediction_uuids")
    assert 0 < uuids.copied < uuids.source  # only the rest was copied
    assert next(t for t in report.tables if t.table == "models").copied == 0
    assert _dump(target) == expected


@pytest.mark.postgres
@pytest.mark.slow
def test_a_copy_killed_with_sigkill_continues_when_run_again(
    source_home: Path, postgres_schema_url: str
) -> None:
    import psycopg

    with open_store() as store:  # enough rows that the copy is still running when killed
        who = Identity("crn:m/k", "crn:b/k", "crn:d/k")
        store.write_predictions(
            [
                Prediction(str(uuidlib.uuid4()), who, NOW + i, NOW + i, {"x": i})
                for i in range(20000)
            ]
        )
    expected = _dump(_sqlite_url(source_home / "modelyard.db"))
    exe = str(Path(sys.executable).parent / "modelyard")
    command = [exe, "store", "copy", "--to", postgres_schema_url, "--batch-size", "20", "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_at = None
    with psycopg.connect(postgres_schema_url, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                row = conn.execute(
                    f"SELECT copied FROM {MARKER} WHERE table_name = 'predictions'"
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
            if row is not None and row[0] >= 1000:
                proc.kill()
                killed_at = row[0]
                break
            time.sleep(0.01)
    proc.communicate(timeout=30)
    assert killed_at is not None, "the copy finished before it could be killed"
    assert proc.returncode == -9

    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["resumed"]
    predictions = next(t for t in report["tables"] if t["table"] == "predictions")
    assert predictions["source"] == predictions["target"] > predictions["copied"] > 0
    assert _dump(postgres_schema_url) == expected


# -- refusals ----------------------------------------------------------------------------------
def test_a_target_with_rows_is_refused_naming_them(source_home: Path, tmp_path: Path) -> None:
    target = tmp_path / "used.db"
    with open_store(_sqlite_url(target)) as store:
        Registry(store).create_model("already-here")
    with pytest.raises(Conflict, match=r"not empty: models \(1 row\)"):
        copy_store(None, _sqlite_url(target))
    with open_store(_sqlite_url(target)) as store:
        assert [m.name for m in Registry(store).list_models()] == ["already-here"]


def test_a_target_that_is_not_a_modelyard_store_is_refused_untouched(
    source_home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "theirs.db"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(Conflict, match=r"not a Modelyard store's \(invoices\)"):
        copy_store(None, _sqlite_url(target))
    with sqlite3.connect(target) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert names == ["invoices"]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_second_copy_into_a_target_being_copied_into_is_refused(
    kind: str, source_home: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        target = _sqlite_url(tmp_path / "copy.db")
        running: Side = SQLiteSide(tmp_path / "copy.db", source=False)
    else:
        target = request.getfixturevalue("postgres_schema_url")
        running = PostgresSide(target, "the target", source=False)
    running.lock()  # what a copy in another process holds while it runs
    try:
        with pytest.raises(Conflict, match=r"another 'modelyard store copy' into .* is running"):
            copy_store(None, target)
    finally:
        running.close()
    assert copy_store(None, target).ok  # once it is gone, a copy goes ahead
    assert not (tmp_path / "copy.db-copylock").exists()


def test_a_finished_copy_is_not_copied_twice(source_home: Path, tmp_path: Path) -> None:
    target = _sqlite_url(tmp_path / "copy.db")
    assert copy_store(None, target).ok
    before = _dump(target)
    with pytest.raises(Conflict, match="nothing to resume"):
        copy_store(None, target)
    assert _dump(target) == before


def test_an_unfinished_copy_of_another_store_is_not_resumed(
    source_home: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    with open_store(_sqlite_url(other)) as store:
        _fill(store, predictions=500)
    target = _sqlite_url(tmp_path / "copy.db")
    with pytest.raises(_Stop):
        copy_store(_sqlite_url(other), target, batch_size=50, progress=_stop_after(1))
    with pytest.raises(Conflict, match="unfinished copy of another store") as info:
        copy_store(None, target)
    assert str(other) in str(info.value) and str(source_home) in str(info.value)


def test_a_source_at_another_schema_version_is_refused_naming_both(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute(
        f"CREATE TABLE {MIGRATIONS} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "modelyard_version TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
    )
    for migration in migrations("sqlite")[: SCHEMA_VERSION - 1]:
        for statement in migration.statements:
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO {MIGRATIONS} VALUES (?, ?, '0.1.0', 1)",
            (migration.version, migration.name),
        )
    conn.commit()
    conn.close()
    target = tmp_path / "new.db"
    with pytest.raises(Conflict) as info:
        copy_store(_sqlite_url(old), _sqlite_url(target))
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION - 1}" in message
    assert f"version {SCHEMA_VERSION}" in message and "modelyard store info" in message
    assert not target.exists()  # refused before anything was created
    with sqlite3.connect(old) as conn:  # and the source was not migrated by looking at it
        assert conn.execute(f"SELECT MAX(version) FROM {MIGRATIONS}").fetchone()[0] == (
            SCHEMA_VERSION - 1
        )


def test_a_live_server_on_the_source_home_is_refused(source_home: Path, tmp_path: Path) -> None:
    server_file = source_home / "server.json"
    server_file.write_text(json.dumps({"url": "http://127.0.0.1:8000", "pid": os.getpid()}))
    with pytest.raises(Conflict, match=rf"pid {os.getpid()}.*stop it") as info:
        copy_store(str(source_home), _sqlite_url(tmp_path / "copy.db"))
    assert str(source_home) in str(info.value)
    # A server.json left by a server that is gone does not stop the copy.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    server_file.write_text(json.dumps({"url": "http://127.0.0.1:8000", "pid": int(gone.stdout)}))
    assert copy_store(str(source_home), _sqlite_url(tmp_path / "copy.db")).ok


@pytest.mark.parametrize(
    ("source", "target", "match"),
    [
        ("{home}", "{home}/modelyard.db", "both name"),
        ("{tmp}/nowhere", "{tmp}/copy.db", "holds no modelyard.db"),
        ("{tmp}/missing.db", "{tmp}/copy.db", "does not exist"),
        ("{home}", "sqlite://:memory:", "in-memory"),
        ("{home}", "mysql://db/x", "not supported"),
        ("{tmp}/plain.db", "{tmp}/copy.db", "holds no Modelyard store"),
    ],
)
def test_bad_locations_are_refused_naming_them(
    source_home: Path, tmp_path: Path, source: str, target: str, match: str
) -> None:
    sqlite3.connect(tmp_path / "plain.db").close()
    (tmp_path / "nowhere").mkdir()
    values = {"home": str(source_home), "tmp": str(tmp_path)}
    with pytest.raises(InvalidInput, match=match):
        copy_store(source.format(**values), target.format(**values))


def test_a_count_that_differs_at_the_end_is_an_error_and_keeps_the_marker(
    source_home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "copy.db"

    def someone_writes(table: str, copied: int, total: int) -> None:
        if table == "models" and copied == total:  # a server started on the target meanwhile
            with sqlite3.connect(target) as conn:
                conn.execute(
                    "INSERT INTO models VALUES ('crn:x', 'intruder', 'h', 'p', '{}', 1, 1, NULL)"
                )

    with pytest.raises(CountMismatch, match=r"models 1 -> 2") as info:
        copy_store(None, _sqlite_url(target), progress=someone_writes)
    assert [t.table for t in info.value.report.tables if not t.ok] == ["models"]
    with sqlite3.connect(target) as conn:
        assert conn.execute(f"SELECT COUNT(*) FROM {MARKER}").fetchone()[0] > 0
