"""PostgreSQL specifics: a server that is not there, and passwords kept out of messages."""

from __future__ import annotations

import pytest

from modelyard.errors import StoreUnavailable
from modelyard.store.postgres import PostgresStore


def test_an_unreachable_server_is_store_unavailable_without_the_password() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    url = "postgresql://someone:s3cret@127.0.0.1:1/db"
    with pytest.raises(StoreUnavailable) as info:
        PostgresStore(url, connect_timeout=2)
    message = str(info.value)
    assert "127.0.0.1:1" in message and "MODELYARD_DATABASE_URL" in message
    assert "s3cret" not in message


@pytest.mark.postgres
def test_concurrent_rollups_and_late_values_count_everything_once(
    postgres_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' worth of maintenance (two connections) racing on the same rows, while
    delayed values keep arriving: every record and every value lands in exactly one bucket."""
    import threading
    import uuid as uuidlib

    from modelyard.store import (
        Identity,
        Prediction,
        Query,
        RecordKind,
        RollupPolicy,
        Tier,
        sqlrollup,
    )

    monkeypatch.setattr(sqlrollup, "RAW_CHUNK", 50)
    minute, day = 60_000, 86_400_000
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % day
    who = Identity("crn:m", "crn:b", "crn:d")
    batch = [
        Prediction(str(uuidlib.uuid4()), who, t0 + i * 1000, t0 + i * 1000, {"x": 1.0})
        for i in range(1200)
    ]
    policy = RollupPolicy(raw_horizon_ms=day, tiers=(Tier(minute, 3 * day), Tier(day, None)))
    stores = [PostgresStore(postgres_schema_url) for _ in range(3)]
    try:
        stores[0].write_predictions(batch)
        errors: list[BaseException] = []

        def run(fn: object) -> threading.Thread:
            def body() -> None:
                try:
                    fn()  # type: ignore[operator]
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=body)
            thread.start()
            return thread

        def late_values() -> None:
            for p in batch[::10]:
                stores[2].add_delayed(p.uuid, {"truth": 1.0}, source="race")

        threads = [
            run(lambda: stores[0].rollup(policy, now_ms=t0 + 2 * day)),
            run(lambda: stores[1].rollup(policy, now_ms=t0 + 2 * day)),
            run(late_values),
        ]
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        stores[0].rollup(policy, now_ms=t0 + 2 * day)  # whatever the race left
        records, _ = stores[0].read(Query(deployment_crn="crn:d", end_ms=t0 + day))
        assert {r.kind for r in records} == {RecordKind.ROLLUP}
        assert sum(r.metrics["_records"] for r in records) == 1200
        assert sum(r.metrics["x"]["count"] for r in records) == 1200
        assert sum(r.metrics.get("truth", {}).get("count", 0) for r in records) == 120
        assert stores[0].info().delayed == 120
    finally:
        for store in stores:
            store.close()


@pytest.mark.postgres
def test_a_dropped_connection_is_reopened(postgres_schema_url: str) -> None:
    """The server ends the store's session (restart, idle timeout): the next write reconnects
    and retries its transaction; reads work again afterwards."""
    import psycopg

    from modelyard.store import Identity, Prediction, Query

    who = Identity("crn:m", "crn:b", "crn:d")
    with PostgresStore(postgres_schema_url) as store:
        store.write_predictions([Prediction("a", who, 1, 1, {"x": 1})])
        pid = store._conn.info.backend_pid
        with psycopg.connect(postgres_schema_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        store.write_predictions([Prediction("b", who, 2, 2, {"x": 2})])
        assert store._conn.info.backend_pid != pid
        records, _ = store.read(Query(deployment_crn="crn:d", end_ms=10))
        assert [r.uuid for r in records] == ["a", "b"]


@pytest.mark.postgres
def test_scan_pages_come_from_a_connection_of_their_own_that_is_reopened_when_dropped(
    postgres_schema_url: str,
) -> None:
    """Scan pages are read on a second, autocommit connection (one round trip a page, read
    ahead on a thread). The server ending it between two batches costs the scan nothing: the
    next page reconnects, and every record comes once, in order. Meanwhile the caller uses the
    store's own connection between batches (no lock is held across them)."""
    import psycopg

    from modelyard.store import Identity, Prediction, Query

    who = Identity("crn:m", "crn:b", "crn:d")
    rows = [Prediction(f"u{i:03d}", who, 1_000 + i, 1_000 + i, {"x": i}) for i in range(50)]
    with PostgresStore(postgres_schema_url) as store:
        store.write_predictions(rows)
        query = Query(deployment_crn="crn:d", end_ms=10_000)
        seen: list[str] = []
        dropped = 0
        for i, batch in enumerate(store.scan(query, 10)):
            seen.extend(map(str, batch.uuid))
            assert store._scan_conn is not None
            if i == 0:
                dropped = store._scan_conn.info.backend_pid
                assert dropped not in (0, store._conn.info.backend_pid)
            if i == 1:
                with psycopg.connect(postgres_schema_url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (dropped,))
                store.write_predictions([Prediction("late", who, 9_000, 9_000, {"x": -1})])
                assert store.read(Query(deployment_crn="crn:d", end_ms=10_000))[0]
        assert seen == [r.uuid for r in rows] + ["late"]
        assert store._scan_conn.info.backend_pid not in (0, dropped)  # replaced, and alive
        assert store._scan_read(lambda cur: cur.execute("SHOW enable_sort").fetchone()) == ("off",)
        scan_conn = store._scan_conn
    assert scan_conn.closed  # closing the store closes its scan connection too
