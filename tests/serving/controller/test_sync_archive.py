"""Snapshot archives: packed where a build ran, stored in the database, unpacked on a server that
lacks the folder; and everything an archive from a damaged or hostile database could try.

The registry part runs on SQLite and on PostgreSQL (``registry.snapshots``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.builds.archive import (
    ARCHIVE_FORMAT,
    pack_snapshot,
    unpack_snapshot,
)
from modelyard.builds.snapshot import digest_of, snapshot_project
from modelyard.errors import InvalidInput, NotFound, PayloadTooLarge
from modelyard.registry import Registry
from modelyard.store import MetricsStore, open_store
from modelyard.store.sqlaccess import transaction
from modelyard.store.sqlite import SQLiteStore


def snapshot(tmp_path: Path) -> tuple[str, Path]:
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "predict.py").write_text("from pkg import helper\n\ndef predict(a):\n    return a\n")
    (project / "pkg" / "helper.py").write_text("VALUE = 1\n")
    (project / "pkg" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(project / "pkg" / "run.sh", 0o755)
    (project / "weights.bin").write_bytes(os.urandom(300_000))
    os.symlink("pkg/helper.py", project / "alias.py")
    os.symlink("pkg", project / "lib")
    snap = snapshot_project(project, tmp_path / "snapshots")
    return snap.digest, snap.path


def tree(root: Path) -> dict[str, Any]:
    """Every entry under ``root``: file bytes and mode, or link target."""
    out: dict[str, Any] = {}
    for current, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(current, d))]:
            full = Path(current) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = ("link", os.readlink(full))
            else:
                out[rel] = (full.read_bytes(), oct(full.stat().st_mode & 0o777))
    return out


def test_a_snapshot_unpacks_byte_for_byte_elsewhere(tmp_path: Path) -> None:
    digest, folder = snapshot(tmp_path)
    chunks = list(pack_snapshot(folder, digest, chunk_bytes=64 * 1024))
    assert len(chunks) > 2 and all(len(c) == 64 * 1024 for c in chunks[:-1])
    out = unpack_snapshot(chunks, digest, tmp_path / "other")
    assert out == tmp_path / "other" / digest
    assert tree(out) == tree(folder)
    assert oct(out.stat().st_mode & 0o777) == "0o555"  # read-only like a built one
    # Content-addressed: a folder of that name is kept as it is, the chunks are not read.
    assert unpack_snapshot(iter(()), digest, tmp_path / "other") == out
    assert [p.name for p in (tmp_path / "other").iterdir()] == [digest]


def test_a_folder_changed_on_disk_is_not_packed_under_its_old_name(tmp_path: Path) -> None:
    digest, folder = snapshot(tmp_path)
    os.chmod(folder, 0o755)
    os.chmod(folder / "predict.py", 0o644)
    (folder / "predict.py").write_text("def predict(a):\n    return 'changed'\n")
    with pytest.raises(InvalidInput, match="not " + digest):
        list(pack_snapshot(folder, digest))


def craft(entries: list[tuple[dict[str, Any], bytes]], end: str, tail: bytes = b"") -> list[bytes]:
    """An archive holding ``entries`` (header, data) as a hostile database row could."""
    import orjson

    raw = ARCHIVE_FORMAT.encode() + b"\n"
    for header, data in [*entries, ({"k": "end", "d": end}, b"")]:
        body = orjson.dumps(header)
        raw += len(body).to_bytes(4, "big") + body + data
    return [raw + tail]


def file_digest(entries: list[tuple[str, bytes]]) -> str:
    return digest_of(
        [["file", rel, "-", hashlib.sha256(data).hexdigest()] for rel, data in entries]
    )


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../outside.py", "not a relative path inside"),
        ("/etc/cron.d/x", "not a relative path inside"),
        ("a/./b.py", "not a relative path inside"),
        ("a\\b.py", "has the path"),
        ("", "has the path"),
    ],
)
def test_paths_outside_the_snapshot_are_refused(tmp_path: Path, path: str, why: str) -> None:
    data = b"x = 1\n"
    digest = file_digest([(path, data)])
    archive = craft([({"p": path, "k": "f", "x": False, "n": len(data)}, data)], digest)
    with pytest.raises(InvalidInput, match=why):
        unpack_snapshot(archive, digest, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []  # nothing left behind
    assert not (tmp_path / "outside.py").exists()


def test_links_leaving_the_snapshot_and_entries_out_of_order_are_refused(tmp_path: Path) -> None:
    escape = [({"p": "a.py", "k": "l", "t": "../../etc/passwd"}, b"")]
    digest = digest_of([["link", "a.py", "../../etc/passwd"]])
    with pytest.raises(InvalidInput, match="outside the snapshot"):
        unpack_snapshot(craft(escape, digest), digest, tmp_path / "dest")
    dangling = [({"p": "a.py", "k": "l", "t": "missing.py"}, b"")]
    digest = digest_of([["link", "a.py", "missing.py"]])
    with pytest.raises(InvalidInput, match="outside the snapshot"):
        unpack_snapshot(craft(dangling, digest), digest, tmp_path / "dest")
    twice = [({"p": "a.py", "k": "f", "x": False, "n": 1}, b"1")] * 2
    with pytest.raises(InvalidInput, match="out of order"):
        unpack_snapshot(craft(twice, "0" * 64), "0" * 64, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_content_that_does_not_match_the_digest_is_refused(tmp_path: Path) -> None:
    digest = file_digest([("predict.py", b"good\n")])
    evil = [({"p": "predict.py", "k": "f", "x": False, "n": 5}, b"evil\n")]
    with pytest.raises(InvalidInput, match="altered in the database"):
        unpack_snapshot(craft(evil, digest), digest, tmp_path / "dest")
    assert not (tmp_path / "dest" / digest).exists()


def test_damaged_truncated_oversized_and_padded_archives_are_refused(tmp_path: Path) -> None:
    digest, folder = snapshot(tmp_path)
    chunks = list(pack_snapshot(folder, digest, chunk_bytes=64 * 1024))
    dest = tmp_path / "dest"
    with pytest.raises(InvalidInput, match="ends early"):
        unpack_snapshot(chunks[:-1], digest, dest)
    flipped = bytearray(chunks[1])
    flipped[100] ^= 0xFF
    with pytest.raises(InvalidInput, match=r"damaged|altered"):
        unpack_snapshot([chunks[0], bytes(flipped), *chunks[2:]], digest, dest)
    with pytest.raises(InvalidInput, match="after its end"):
        unpack_snapshot([*chunks, b"more"], digest, dest)
    with pytest.raises(PayloadTooLarge, match="over the limit"):
        unpack_snapshot(chunks, digest, dest, max_file_bytes=100_000)
    # A header claiming a huge file is refused before anything is read or written.
    huge = [({"p": "a.bin", "k": "f", "x": False, "n": 10**12}, b"")]
    with pytest.raises(PayloadTooLarge, match="over the limit"):
        unpack_snapshot(craft(huge, "1" * 64), "1" * 64, dest)
    many = [
        ({"p": f"{i}.bin", "k": "f", "x": False, "n": 400_000}, b"\0" * 400_000) for i in range(3)
    ]
    with pytest.raises(PayloadTooLarge, match="more than 1000000 bytes"):
        unpack_snapshot(craft(many, "1" * 64), "1" * 64, dest, max_total_bytes=1_000_000)
    assert list(dest.iterdir()) == []


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    store: MetricsStore
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "modelyard.db")
    else:
        store = open_store(request.getfixturevalue("postgres_schema_url"))
    try:
        yield Registry(store)
    finally:
        store.close()


def test_archives_are_stored_once_read_back_and_deleted(registry: Registry, tmp_path: Path) -> None:
    digest, folder = snapshot(tmp_path)
    snapshots = registry.snapshots
    assert snapshots.get(digest) is None
    with pytest.raises(NotFound, match="deploy the model again"):
        snapshots.read(digest)
    stored = snapshots.put(
        digest, pack_snapshot(folder, digest, chunk_bytes=50_000), ARCHIVE_FORMAT
    )
    assert stored.chunks > 2 and snapshots.get(digest) == stored
    # Stored once: a second put (another server, same code) keeps the first archive.
    assert snapshots.put(digest, iter([b"other"]), ARCHIVE_FORMAT) == stored
    out = unpack_snapshot(snapshots.read(digest), digest, tmp_path / "fetched")
    assert tree(out) == tree(folder)
    assert [a.digest for a in snapshots.list()] == [digest]
    assert snapshots.delete(digest) and not snapshots.delete(digest)
    assert snapshots.get(digest) is None
    with pytest.raises(InvalidInput, match="sha256"):
        snapshots.get("../" + digest)


def test_a_failed_upload_leaves_nothing_and_a_damaged_row_is_caught(
    registry: Registry, tmp_path: Path
) -> None:
    digest, folder = snapshot(tmp_path)

    def broken() -> Iterator[bytes]:
        yield b"first chunk"
        raise InvalidInput("the folder changed")

    with pytest.raises(InvalidInput, match="folder changed"):
        registry.snapshots.put(digest, broken(), ARCHIVE_FORMAT)
    assert registry.snapshots.get(digest) is None
    assert count_chunks(registry) == 0
    stored = registry.snapshots.put(digest, pack_snapshot(folder, digest, chunk_bytes=50_000), "x")
    transaction(
        registry.store,
        lambda cur: cur.execute(
            rewrite(registry, "UPDATE snapshot_chunks SET data = ? WHERE upload = ? AND seq = 1"),
            (b"tampered", stored.upload),
        ),
    )
    with pytest.raises(InvalidInput, match="does not match its checksum"):
        list(registry.snapshots.read(digest))


def test_two_servers_storing_one_snapshot_at_once_keep_one_archive(
    registry: Registry, tmp_path: Path
) -> None:
    digest, folder = snapshot(tmp_path)
    results: list[Any] = []
    go = threading.Barrier(2)

    def upload() -> None:
        go.wait()
        results.append(registry.snapshots.put(digest, pack_snapshot(folder, digest), "x"))

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2 and results[0] == results[1]
    assert count_chunks(registry) == results[0].chunks  # the loser's chunks are gone


def count_chunks(registry: Registry) -> int:
    from modelyard.store.sqlaccess import reading

    with reading(registry.store) as cur:
        cur.execute("SELECT COUNT(*) FROM snapshot_chunks")
        return int(cur.fetchone()[0])


def rewrite(registry: Registry, text: str) -> str:
    from modelyard.store.sqlaccess import sql

    return sql(registry.store, text)
