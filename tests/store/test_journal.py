"""The prediction journal: what ``submit`` accepted survives a SIGKILL, is replayed once, and a
full journal refuses rather than loses.

Real parts: SQLite stores on disk, real processes killed with SIGKILL, real files. A full disk
is simulated only through the journal's own size limit here (the disk-refuses-the-write path is
tested with a real small filesystem by tests/reliability/test_postgres_outage.py when the machine
allows one).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid as uuidlib
from pathlib import Path

import orjson
import pytest

from _async import run
from _processes import start_replica, stop_replica, wait_healthy
from _wait import wait_until
from modelyard.errors import InvalidInput, StoreUnavailable
from modelyard.serving.gateway import DeploymentPool, Gateway, ReplicaEndpoint
from modelyard.store import BufferedWriter, Identity, Journal, JournalFull, Prediction
from modelyard.store.sqlite import SQLiteStore

WHO = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d")
T0 = 1_700_000_000_000


def records(n: int, start: int = 0) -> list[Prediction]:
    return [
        Prediction(str(uuidlib.uuid4()), WHO, T0 + i, T0 + i + 1, {"x": float(i), "s": "é\n"})
        for i in range(start, start + n)
    ]


def stored(path: Path) -> list[str]:
    """Every prediction uuid in the database, duplicates included."""
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT uuid FROM predictions")]


def settle(writer: BufferedWriter) -> None:
    """Flush; the lock errors the writer met while the store was locked (if any: it depends on
    timing) are each reported once by a flush, so flush until one returns."""
    for _ in range(1000):
        try:
            writer.flush(timeout=30)
            return
        except StoreUnavailable as exc:
            assert "locked" in str(exc), exc
    raise AssertionError("flush kept raising")


def segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.journal"))


def test_replay_writes_what_the_store_lacks_once(tmp_path: Path) -> None:
    """Records appended and never committed are replayed by the next life; a second replay (or
    a replay of records the store already has) writes nothing and raises nothing."""
    folder, db = tmp_path / "journal", tmp_path / "m.db"
    batch = records(2500)
    journal = Journal(folder, fsync_interval_ms=5, max_bytes=10**8)
    for p in batch[:1000]:
        journal.append(p)
    journal.append_many(batch[1000:])
    assert 0 < journal.pending_bytes <= journal.size_bytes
    journal.close()  # nothing committed: the segments stay
    assert segments(folder)
    with SQLiteStore(db) as store:
        store.write_predictions(batch[:700])  # committed before the "crash", mark never moved
        again = Journal(folder, fsync_interval_ms=5, max_bytes=10**8)
        assert again.pending_bytes > 0
        assert again.replay_into(store) == 1800
        assert again.pending_bytes == 0 and again.replay_into(store) == 0
        again.close()
        assert Journal(folder).replay_into(store) == 0
    found = stored(db)
    assert len(found) == len(set(found)) == 2500
    assert set(found) == {p.uuid for p in batch}
    with SQLiteStore(db) as store:  # the metrics came back as they went in
        assert store.find_prediction(batch[1234].uuid).metrics == {"x": 1234.0, "s": "é\n"}


def test_committed_records_are_dropped_and_segments_deleted(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    with Journal(folder, max_bytes=10**6, segment_bytes=4096) as journal:
        for p in records(300):
            journal.append(p)
        before = segments(folder)
        assert len(before) > 5
        journal.committed(200)
        left = segments(folder)
        assert 1 <= len(left) < len(before) and left == before[-len(left) :]
        assert 0 < journal.pending_bytes <= journal.size_bytes

        def on_disk() -> int:  # the segments and the spare the fsync thread makes ahead of need
            return sum(p.stat().st_size for p in [*segments(folder), *folder.glob("spare")])

        # The spare's file is written before the journal adopts (and counts) it: equal once the
        # fsync thread is done with it (one CI run read the size in between: 24576 != 20480).
        wait_until(lambda: journal.size_bytes == on_disk(), 10, "size_bytes matching the disk")
        # only segments still holding uncommitted records are left
        assert len(left) <= journal.pending_bytes // 3000 + 2
        journal.committed(300)
        assert journal.pending_bytes == 0
        assert len(segments(folder)) == 1  # the one still being written
    assert segments(folder) == []  # closed with everything committed: nothing to replay


def test_the_next_segment_is_made_ahead_and_used(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    (folder).mkdir()
    (folder / "spare").write_bytes(b"left by a crash")
    with Journal(folder, fsync_interval_ms=5, max_bytes=10**6, segment_bytes=4096) as journal:
        assert not (folder / "spare").exists() or (folder / "spare").stat().st_size == 4096
        # the file exists a moment before the thread hands it over (after its fsync)
        wait_until(lambda: journal._spare is not None, 10, "the fsync thread's spare segment")
        spare = (folder / "spare").stat().st_ino
        for p in records(30):  # more than one segment's worth
            journal.append(p)
        inodes = [p.stat().st_ino for p in segments(folder)]
        assert len(inodes) == 2 and inodes[1] == spare  # renamed, not made on the request path
        assert journal.size_bytes <= 3 * 4096
        journal.committed(30)
    assert list(folder.glob("*.journal")) == [] and not (folder / "spare").exists()


def test_writer_with_journal_commits_and_empties_it(tmp_path: Path) -> None:
    folder, db = tmp_path / "journal", tmp_path / "m.db"
    with SQLiteStore(db) as store:
        journal = Journal(folder, max_bytes=10**6, segment_bytes=8192)
        writer = BufferedWriter(store, flush_interval_ms=20, max_batch=100, journal=journal)
        batch = records(1000)
        for p in batch[:500]:
            writer.submit(p)
        writer.submit_many(batch[500:])
        writer.flush(timeout=30)
        assert journal.pending_bytes == 0
        assert len(segments(folder)) == 1
        writer.close()
        journal.close()
    assert sorted(stored(db)) == sorted(p.uuid for p in batch)
    assert segments(folder) == []


def test_a_full_journal_refuses_and_queues_nothing(tmp_path: Path) -> None:
    """While the store is locked nothing commits: the journal fills up to max_bytes, then
    submit raises JournalFull (HTTP 507) naming the folder, the size and the setting, and the
    refused record is neither queued nor journaled. Once the store answers, it drains."""
    folder, db = tmp_path / "journal", tmp_path / "m.db"
    with SQLiteStore(db, timeout=0.2) as store:
        store.register_identity(WHO)
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock: the writer must wait
        journal = Journal(folder, max_bytes=20_000, segment_bytes=2048)
        writer = BufferedWriter(store, flush_interval_ms=10, journal=journal)
        accepted: list[Prediction] = []
        with pytest.raises(JournalFull) as refused:
            for p in records(1000):
                writer.submit(p)
                accepted.append(p)
        assert 0 < len(accepted) < 1000
        assert writer.pending == len(accepted)
        error = refused.value
        assert error.status == 507 and isinstance(error, StoreUnavailable)
        for part in (str(folder), "MODELYARD_JOURNAL_MAX_BYTES", "20000"):
            assert part in str(error)
        assert error.details["size_bytes"] <= 20_000
        with pytest.raises(JournalFull):  # all or none: a batch is refused whole
            writer.submit_many(records(3))
        assert writer.pending == len(accepted)
        blocker.execute("ROLLBACK")
        blocker.close()
        wait_until(lambda: writer.pending == 0, 30, "the writer to drain once the store answers")
        assert journal.pending_bytes == 0
        writer.submit(records(1, 5000)[0])  # room again
        settle(writer)
        writer.close(timeout=30)
        journal.close()
    assert len(stored(db)) == len(accepted) + 1


def test_replay_into_an_unavailable_store_keeps_the_records(tmp_path: Path) -> None:
    folder, db = tmp_path / "journal", tmp_path / "m.db"
    batch = records(50)
    with Journal(folder) as journal:
        journal.append_many(batch)
    with SQLiteStore(db, timeout=0.2) as store:
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        journal = Journal(folder)
        with pytest.raises(StoreUnavailable):
            journal.replay_into(store)
        journal.close()
        blocker.execute("ROLLBACK")
        blocker.close()
        with Journal(folder) as journal:
            assert journal.replay_into(store) == 50
    assert sorted(stored(db)) == sorted(p.uuid for p in batch)


def test_a_torn_last_record_is_skipped(tmp_path: Path) -> None:
    folder, db = tmp_path / "journal", tmp_path / "m.db"
    batch = records(10)
    with Journal(folder) as journal:
        journal.append_many(batch)
    [segment] = segments(folder)
    end = segment.read_bytes().find(b"\0")
    with segment.open("r+b") as torn:  # a machine crash in mid-write (never answered)
        torn.seek(end)
        torn.write(b'["abc", "crn:')
    with SQLiteStore(db) as store, Journal(folder) as journal:
        assert journal.replay_into(store) == 10


def test_one_process_per_journal_folder(tmp_path: Path) -> None:
    with (
        Journal(tmp_path / "j"),
        pytest.raises(StoreUnavailable, match="in use by another process"),
    ):
        Journal(tmp_path / "j")
    Journal(tmp_path / "j").close()  # free again once closed
    assert (tmp_path / "j").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"fsync_interval_ms": -1}, "fsync_interval_ms=-1"),
        ({"max_bytes": 0}, "max_bytes=0"),
        ({"segment_bytes": 1.5}, "segment_bytes=1.5"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        Journal(tmp_path / "j", **kwargs)  # type: ignore[arg-type]


def test_fsync_on_every_append_when_the_interval_is_zero(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    with Journal(folder, fsync_interval_ms=0, segment_bytes=1024) as journal:
        for p in records(40):
            journal.append(p)
        assert len(segments(folder)) > 1
        assert 0 < journal.pending_bytes <= journal.size_bytes


CHILD = """
    import os, sys, threading, uuid
    from modelyard.store import BufferedWriter, Identity, Journal, Prediction
    from modelyard.store.sqlite import SQLiteStore

    WHO = Identity("crn:modelyard:model/m", "crn:modelyard:build/b", "crn:modelyard:deployment/d")
    store = SQLiteStore(sys.argv[1])
    journal = Journal(sys.argv[2], fsync_interval_ms=20, max_bytes=10**9, segment_bytes=65536)
    writer = BufferedWriter(store, flush_interval_ms=15, max_batch=300, journal=journal)
    lock = threading.Lock()

    def client(k):
        n = 0
        while True:
            n += 1
            u = str(uuid.uuid4())
            p = Prediction(u, WHO, 1, 2, {"k": k, "n": n})
            if n % 7 == 0:
                writer.submit_many([p, Prediction(str(uuid.uuid4()), WHO, 1, 2, {"k": k})])
                continue  # a batch: not counted as acknowledged (its second uuid is unknown)
            writer.submit(p)
            with lock:
                os.write(1, (u + "\\n").encode())  # acknowledged: submit returned

    for k in range(4):
        threading.Thread(target=client, args=(k,), daemon=True).start()
    threading.Event().wait()
"""


@pytest.mark.slow
def test_sigkill_while_submitting_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """A process submits from 4 threads while its writer commits batches; it is SIGKILLed at a
    random moment; the next life's replay puts every acknowledged record in the store once."""
    db, folder = tmp_path / "m.db", tmp_path / "journal"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    child = subprocess.Popen(
        [sys.executable, str(script), str(db), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    acknowledged: list[bytes] = []
    reader = threading.Thread(target=lambda: acknowledged.extend(child.stdout or ()), daemon=True)
    reader.start()
    wait_until(lambda: len(acknowledged) > 2000 or child.poll() is not None, 60, "submissions")
    assert child.poll() is None, child.stderr.read() if child.stderr else ""
    time.sleep(random.uniform(0, 0.3))  # a random moment, under load
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    reader.join(10)
    child.stdout.close()
    if child.stderr is not None:
        child.stderr.close()
    acked = {line.decode().strip() for line in acknowledged if line.endswith(b"\n")}
    before = set(stored(db))
    assert before and acked - before, "the kill should leave acknowledged records uncommitted"
    with SQLiteStore(db) as store, Journal(folder) as journal:
        journal.replay_into(store)
    found = stored(db)
    assert len(found) == len(set(found))  # 0 duplicated
    assert acked - set(found) == set()  # 0 lost


MODEL = """
    import modelyard


    @modelyard.model_metrics
    def predict(args):
        modelyard.track_metric("x", args["x"])
        return args["x"] * 2
"""


@pytest.mark.slow
def test_the_gateway_refuses_with_507_rather_than_answer_unrecorded(tmp_path: Path) -> None:
    """Through a real replica: while the store is locked the journal fills; then the gateway
    answers 507 (single and batch calls), and what it answered 200 is exactly what is stored
    once the store answers again."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "predict.py").write_text(textwrap.dedent(MODEL))
    replica = start_replica(
        project, tmp_path / "home", tmp_path / "replica.log", "predict.py",
        "--function", "predict", "--batch-function", "none", replica_id="r1",
    )  # fmt: skip
    db, folder = tmp_path / "m.db", tmp_path / "journal"
    try:
        wait_healthy(replica)
        with SQLiteStore(db, timeout=0.2) as store:
            store.register_identity(WHO)
            blocker = sqlite3.connect(db, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            journal = Journal(folder, max_bytes=16_384, segment_bytes=2048)
            writer = BufferedWriter(store, flush_interval_ms=10, journal=journal)

            async def scenario() -> tuple[list[str], dict[str, object], int, int]:
                gateway = Gateway(writer)
                pool = DeploymentPool(WHO)
                pool.add_endpoint(ReplicaEndpoint("r1", replica.url, capacity=2))
                gateway.set_pool("m", pool)
                answered: list[str] = []
                for x in range(2000):
                    result = await gateway.invoke("m", orjson.dumps({"x": x}))
                    if result.http_status != 200:
                        break
                    assert result.uuid is not None
                    answered.append(result.uuid)
                batch = await gateway.invoke_batch("m", orjson.dumps([{"x": 1}, {"x": 2}]))
                await gateway.close()
                return answered, result.envelope, result.http_status, batch.http_status

            answered, refusal, status, batch_status = run(scenario, timeout_s=120)
            assert 0 < len(answered) < 2000 and status == 507 and batch_status == 507
            assert refusal["success"] is False and "uuid" not in refusal
            error = refusal["error"]
            assert isinstance(error, dict) and error["code"] == "store_unavailable"
            assert (
                str(folder) in error["message"]
                and "MODELYARD_JOURNAL_MAX_BYTES" in error["message"]
            )
            assert writer.pending == len(answered)  # nothing of the refused calls was queued
            blocker.execute("ROLLBACK")
            blocker.close()
            wait_until(lambda: writer.pending == 0, 30, "the writer to catch up")
            settle(writer)
            writer.close(timeout=30)
            journal.close()
        assert sorted(stored(db)) == sorted(answered)
    finally:
        stop_replica(replica)
