"""PostgreSQL stopped and restarted under a running store, registry, writer and server.

Every test uses a PostgreSQL cluster of its own (``_pgcluster``: initdb and pg_ctl into a
temporary folder, a free loopback port; the machine's own server stays untouched). The store
reconnects by itself; the predict path's cached lookups answer their last known value while the
database cannot be read (stale if error), and only then; ``StoreHealth`` says when the store is
down. End to end (slow), a real ``modelyard server`` keeps answering while PostgreSQL is stopped
and restarted, ``/healthz`` and the dashboard say the store is down meanwhile, a full journal
(its limit, or a real small disk) refuses with 507, a SIGKILL loses nothing answered, and every
answered prediction ends up in the store exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from _async import run
from _outage import MODEL, PREDICT, Load, Outcome, Server, stored_uuids, under_load, wait_health
from _pgcluster import PgCluster, pg_cluster
from _wait import wait_until
from modelyard.errors import StoreUnavailable, Unauthorized
from modelyard.registry import Registry
from modelyard.store import BufferedWriter
from modelyard.store.base import Identity, Prediction, Query, RecordKind
from modelyard.store.postgres import PostgresStore
from modelyard.store.sqlaccess import transaction
from modelyard.web.services import ModelCache
from modelyard.web.store_health import StoreHealth


@pytest.fixture(scope="module")
def _cluster() -> Iterator[PgCluster]:
    with pg_cluster() as started:
        yield started


@pytest.fixture
def cluster(_cluster: PgCluster) -> PgCluster:
    """The module's cluster, running (a test that failed while it was stopped left it so)."""
    if not _cluster.running:
        _cluster.start()
    return _cluster


@pytest.fixture
def db_url(cluster: PgCluster) -> str:
    """A new, empty database on the cluster for this test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.url.rsplit("/", 1)[0] + f"/{name}"


# -- the store and the registry --------------------------------------------------------------


def test_the_store_reconnects_after_a_restart_and_says_where_it_failed(
    cluster: PgCluster, db_url: str
) -> None:
    with PostgresStore(db_url) as store:
        registry = Registry(store, cache_ttl_s=0)
        registry.create_model("churn")
        for mode in ("fast", "immediate"):
            cluster.restart(mode)
            assert registry.get_model("churn").name == "churn"  # the first read after it
            registry.create_model(f"after-{mode}")  # and the first write
        cluster.stop()
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{cluster.port}") as read:
            registry.get_model("churn")
        assert read.value.status == 503
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{cluster.port}"):
            registry.create_model("while-down")
        cluster.start()
        assert {m.name for m in registry.list_models()} == {
            "churn",
            "after-fast",
            "after-immediate",
        }


def test_cached_lookups_answer_their_last_value_while_the_store_is_down(
    cluster: PgCluster, db_url: str
) -> None:
    ttl_s = 0.05
    with PostgresStore(db_url) as store:
        registry = Registry(store, cache_ttl_s=ttl_s)
        models = ModelCache(registry, ttl_s=ttl_s)
        model, access_key = registry.create_model("churn")
        _, gone_key = registry.create_model("gone")
        key, token = registry.create_api_key("caller", role="user")
        revoked, revoked_token = registry.create_api_key("revoked", role="user")
        for name in ("churn", "gone"):
            models.get(name)
        assert registry.model_by_access_key(access_key).name == "churn"
        assert registry.model_by_access_key(gone_key).name == "gone"
        registry.authenticate(token)
        registry.authenticate(revoked_token)
        registry.delete_model("gone")  # this process drops what it cached of it
        models.drop("gone")  # (as the server's routes do)
        registry.revoke_api_key(revoked.id)
        never_asked, never_asked_key = registry.create_model("never-asked")
        time.sleep(ttl_s * 2)  # every entry expired: the next lookup reads the database

        cluster.stop()
        time.sleep(ttl_s * 2)
        assert registry.model_by_access_key(access_key).crn == model.crn
        assert registry.authenticate(token).id == key.id
        assert models.get("churn").crn == model.crn
        # Nothing known: the outage is said (503), never a wrong "unknown key" (401).
        with pytest.raises(StoreUnavailable):
            registry.model_by_access_key(never_asked_key)
        with pytest.raises(StoreUnavailable):
            models.get(never_asked.name)
        # What this process deleted or revoked stays so, database or not.
        with pytest.raises(StoreUnavailable):
            registry.model_by_access_key(gone_key)
        with pytest.raises(StoreUnavailable):
            models.get("gone")
        with pytest.raises(StoreUnavailable):
            registry.authenticate(revoked_token)

        cluster.start()
        assert registry.model_by_access_key(never_asked_key).name == "never-asked"
        with pytest.raises(Unauthorized, match="revoked"):
            registry.authenticate(revoked_token)


def test_a_key_the_database_no_longer_knows_is_not_answered_stale(
    cluster: PgCluster, db_url: str
) -> None:
    """Another server deleted the model: once this one has read that, an outage does not bring
    the old answer back."""
    ttl_s = 0.05
    with PostgresStore(db_url) as store, PostgresStore(db_url) as other_store:
        registry = Registry(store, cache_ttl_s=ttl_s)
        _, access_key = registry.create_model("churn")
        assert registry.model_by_access_key(access_key).name == "churn"
        Registry(other_store).delete_model("churn")
        time.sleep(ttl_s * 2)
        with pytest.raises(Unauthorized, match="unknown"):
            registry.model_by_access_key(access_key)
        cluster.stop()
        with pytest.raises(StoreUnavailable):
            registry.model_by_access_key(access_key)


def test_the_writer_keeps_records_through_an_outage_and_then_reports_no_error(
    cluster: PgCluster, db_url: str
) -> None:
    """Records submitted while PostgreSQL is down wait; once it is back they are written, and
    ``flush`` and ``close`` no longer raise the outage (nothing was lost)."""
    who = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d")
    with PostgresStore(db_url) as store:
        store.register_identity(who)
        writer = BufferedWriter(store, flush_interval_ms=20)
        cluster.stop()
        batch = [
            Prediction(
                str(uuid.uuid4()), who, 1_700_000_000_000 + i, 1_700_000_000_001 + i, {"x": i}
            )
            for i in range(50)
        ]
        for record in batch:
            writer.submit(record)
        with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{cluster.port}"):
            writer.flush(timeout=10)
        assert writer.pending == 50
        cluster.start()
        wait_until(lambda: writer.pending == 0, 30, "the writer to catch up")
        writer.flush(timeout=30)  # the outage is over and cost nothing: no error to raise
        writer.close()
        kinds = frozenset({RecordKind.PREDICTION})
        query = Query(model_crn=who.model_crn, kinds=kinds)
        stored = {u for b in store.scan(query) for u in b.uuid}
        assert stored == {r.uuid for r in batch}


def test_store_health_says_when_the_store_is_down_and_back(
    cluster: PgCluster, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="modelyard.server")
    with PostgresStore(db_url) as store:
        health = StoreHealth(store, interval_s=0.05, stuck_s=0.5, backlog=lambda: 7)
        health.start()
        try:
            wait_until(lambda: health.report()["store"] == "ok", 10, "a first probe")
            up_since = health.report()["since_ms"]
            cluster.stop()
            wait_until(lambda: not health.available, 10, "the outage to be seen")
            report = health.report(detail=True)
            assert report["store"] == "unavailable"
            assert report["pending_records"] == 7
            assert report["since_ms"] >= up_since
            assert f"127.0.0.1:{cluster.port}" in report["error"]
            assert "error" not in health.report()  # the public report names no database
            cluster.start()
            wait_until(lambda: health.available, 10, "the store to be back")
            # A long transaction of the store's own (a big read) does not make it look down:
            # the probe has a connection of its own.
            holding, release = threading.Event(), threading.Event()

            def hold(cur: object) -> None:
                holding.set()
                release.wait(10)

            held = threading.Thread(target=transaction, args=(store, hold))
            held.start()
            try:
                assert holding.wait(10)
                until = time.monotonic() + health.stuck_s + 0.5
                while time.monotonic() < until:
                    assert health.available, "a long transaction made the store look down"
                    time.sleep(0.02)
            finally:
                release.set()
                held.join(10)
        finally:
            health.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "modelyard.server"]
    assert any("store is unavailable" in m for m in messages), messages
    assert any("answers again" in m for m in messages), messages


# -- a real server on the cluster ------------------------------------------------------------

_CACHE_TTL_S = 2.0  # the server's key and model caches (ttlcache.DEFAULT_TTL_S)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "predict.py").write_text(textwrap.dedent(PREDICT))
    return folder


@pytest.mark.slow
def test_predictions_go_on_while_postgres_is_stopped_and_restarted(
    cluster: PgCluster, db_url: str, modelyard_home: Path, project: Path
) -> None:
    """Stopped for longer than the caches live, then restarted as after a crash: every request
    is answered, /healthz and the dashboard say the store is down meanwhile, and once it is back
    every answered prediction is in the store exactly once."""
    server = Server(modelyard_home, db_url).start()
    try:
        model_crn = server.deploy(project)
        health = server.health()
        assert (health["status"], health["store"], health["pending_records"]) == ("ok", "ok", 0)
        assert health["journal_bytes"] == 0 and health["since_ms"] > 0

        async def scenario(load: Load) -> None:
            await load.answered_after(0, 20)
            down = time.monotonic()
            await asyncio.to_thread(cluster.stop, "fast")
            degraded = await wait_health(server, "unavailable")
            assert degraded["status"] == "degraded"
            assert degraded["pending_records"] >= 0
            page = await asyncio.to_thread(httpx.get, f"{server.base}/ui/login", timeout=10)
            assert "The store is down" in page.text
            assert f":{cluster.port}" not in page.text  # signed out: the database is not named
            # Past the caches' lifetime: the lookups answer their last known values.
            await load.answered_after(down + _CACHE_TTL_S + 0.5, 50)
            assert (await asyncio.to_thread(server.health))["pending_records"] > 0
            await asyncio.to_thread(cluster.start)
            await wait_health(server, "ok", drained=False)  # the load goes on: never 0 pending
            page = await asyncio.to_thread(httpx.get, f"{server.base}/ui/login", timeout=10)
            assert "The store is down" not in page.text
            # A restart as after a crash, under load.
            restarted = time.monotonic()
            await asyncio.to_thread(cluster.restart, "immediate")
            await load.answered_after(restarted, 50)
            await load.stop()
            await wait_health(server, "ok")

        outcomes = under_load(server, scenario)
        # Nothing is waiting any more: it stops cleanly (no outage error raised at shutdown).
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it got
        assert "Application shutdown complete" in server.output, server.output
    finally:
        server.stop()
    failed = [o for o in outcomes if o[1] != 200]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed, e.g. {failed[:3]}"
    answered = {o[2] for o in outcomes if o[2] is not None}
    assert len(answered) == len(outcomes)
    stored = stored_uuids(db_url, model_crn)
    assert answered - set(stored) == set(), "answered predictions missing from the store"
    assert [u for u, n in stored.items() if n > 1] == []


def fill_the_journal(server: Server, cluster: PgCluster) -> Callable[[Load], Awaitable[None]]:
    """A scenario: PostgreSQL stops under load until predictions are refused (journal full)."""

    async def scenario(load: Load) -> None:
        await load.answered_after(0, 20)
        down = time.monotonic()
        await asyncio.to_thread(cluster.stop, "fast")
        await load.answered_after(down, 20)  # answered meanwhile: their records in the journal
        deadline = time.monotonic() + 60
        while not any(o[1] == 507 for o in load.outcomes):
            assert time.monotonic() < deadline, "the journal never filled"
            await asyncio.sleep(0.05)
        # A 64 KiB journal can fill before the 1 s health probe has seen the database go: the
        # promise is that /healthz says so while it is down, not within the first second.
        await wait_health(server, "unavailable", drained=False)

    return scenario


def check_kept(outcomes: list[Outcome], db_url: str, model_crn: str) -> None:
    """Every answered prediction stored exactly once; every other request refused with 507."""
    assert [o for o in outcomes if o[1] not in (200, 507, None)] == []
    answered = {o[2] for o in outcomes if o[1] == 200}
    stored = stored_uuids(db_url, model_crn)
    assert answered - set(stored) == set(), "answered predictions missing from the store"
    assert [u for u, n in stored.items() if n > 1] == []


@pytest.mark.slow
def test_a_full_journal_refuses_predictions_and_a_kill_then_loses_none(
    cluster: PgCluster, db_url: str, modelyard_home: Path, project: Path
) -> None:
    """PostgreSQL down until the journal (limited to 64 KiB) is full: predictions are refused
    with 507 naming the folder and the setting, never answered without their record. The server
    is then SIGKILLed under load; started again once PostgreSQL is back, it writes every answered
    prediction from the journal to the store exactly once, and answers again."""
    server = Server(modelyard_home, db_url, MODELYARD_JOURNAL_MAX_BYTES="64K").start()
    try:
        model_crn = server.deploy(project)
        fill = fill_the_journal(server, cluster)

        async def scenario(load: Load) -> None:
            await fill(load)
            assert server.proc is not None
            server.proc.send_signal(signal.SIGKILL)  # under load: requests in flight
            await asyncio.to_thread(server.proc.wait, 30)

        outcomes = under_load(server, scenario)
        cluster.start()
        server.start()  # the same home: the journal is replayed before it serves
        assert run(wait_health(server, "ok"))["journal_bytes"] < 64 * 1024
        again = httpx.post(
            f"{server.base}/api/v1/models/{MODEL}/predict", json={"x": 1}, headers=server.auth
        )
        assert again.status_code == 200, again.text
    finally:
        server.stop()
    message = next(o[3] for o in outcomes if o[1] == 507)
    journal = modelyard_home / "journal"
    assert f"journal in {journal} is full" in message, message
    assert "MODELYARD_JOURNAL_MAX_BYTES" in message, message
    check_kept(outcomes, db_url, model_crn)


@contextmanager
def small_filesystem(folder: Path, size: str) -> Iterator[None]:
    """A tmpfs of ``size`` mounted on ``folder`` for the block (needs root and mount rights)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root; the journal's size limit is tested")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine refuses a tmpfs mount ({mounted.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


@pytest.mark.slow
def test_a_full_disk_refuses_predictions_and_loses_none(
    cluster: PgCluster, db_url: str, modelyard_home: Path, project: Path
) -> None:
    """The journal on a real 320 KiB filesystem, PostgreSQL down until the disk is full: 507
    naming the disk, the folder and the setting; none answered is lost, and once the store is
    back the journal drains and predictions are answered again."""
    journal = modelyard_home / "journal"
    # A limit the disk runs out before (1 MB: segments of 128 KiB, so a drained journal frees
    # room on the small disk).
    with small_filesystem(journal, "320k"):
        server = Server(modelyard_home, db_url, MODELYARD_JOURNAL_MAX_BYTES="1MB").start()
        try:
            model_crn = server.deploy(project)
            fill = fill_the_journal(server, cluster)

            async def scenario(load: Load) -> None:
                await fill(load)
                await asyncio.to_thread(cluster.start)
                await wait_health(server, "ok", timeout_s=30, drained=False)  # under load
                await load.answered_after(time.monotonic(), 20)

            outcomes = under_load(server, scenario)
        finally:
            server.stop()
    message = next(o[3] for o in outcomes if o[1] == 507)
    assert f"journal in {journal} is full: the disk" in message, message
    assert "MODELYARD_JOURNAL_MAX_BYTES" in message, message
    check_kept(outcomes, db_url, model_crn)
