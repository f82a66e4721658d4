"""Uploaded folders in the database (``registry.uploads``) on SQLite file, SQLite :memory: and
PostgreSQL: blobs by digest (checked), manifests that need every blob, and pruning."""

from __future__ import annotations

import hashlib

import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import Registry

from .conftest import MsClock


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_blobs_missing_put_and_read(registry: Registry) -> None:
    uploads = registry.uploads
    a, b = b"print('a')\n", bytes(range(256)) * 1000  # binary bytes survive both databases
    assert uploads.missing([_sha(a), _sha(b), _sha(a)]) == [_sha(a), _sha(b)]
    assert uploads.put_blob(_sha(a), a) is True
    assert uploads.put_blob(_sha(a), a) is False  # stored once
    assert uploads.missing([_sha(a), _sha(b)]) == [_sha(b)]
    uploads.put_blob(_sha(b), b)
    assert uploads.read_blob(_sha(b)) == b
    assert uploads.count_blobs() == 2
    with pytest.raises(NotFound, match=f"blob {'0' * 64} is not stored"):
        uploads.read_blob("0" * 64)


def test_a_blob_whose_bytes_do_not_hash_to_its_name_is_refused(registry: Registry) -> None:
    claimed, sent = _sha(b"promised"), b"sent instead"
    with pytest.raises(InvalidInput) as caught:
        registry.uploads.put_blob(claimed, sent)
    assert claimed in str(caught.value) and _sha(sent) in str(caught.value)
    assert registry.uploads.missing([claimed]) == [claimed]


def test_an_upload_needs_every_blob_and_is_written_whole(registry: Registry) -> None:
    uploads = registry.uploads
    data = b"x = 1\n"
    uploads.put_blob(_sha(data), data)
    manifest = [
        {"path": "a.py", "sha256": _sha(data), "size": 6, "mode": 0o644},
        {"path": "b.py", "sha256": "f" * 64, "size": 1, "mode": 0o755},
    ]
    with pytest.raises(InvalidInput, match=f"entry 'b.py' names blob {'f' * 64}, which the"):
        uploads.create(manifest, "alice")
    made = uploads.create([*manifest[:1], {"path": "l.py", "link": "a.py"}], "alice")
    got = uploads.get(made.id)
    assert got == made
    assert (got.files, got.total_bytes, got.created_by) == (1, 6, "alice")
    with pytest.raises(NotFound, match="upload 'nope' does not exist"):
        uploads.get("nope")


def test_prune_removes_old_uploads_and_unused_blobs(registry: Registry, clock: MsClock) -> None:
    uploads = registry.uploads
    old, kept = b"old", b"kept"
    uploads.put_blob(_sha(old), old)
    uploads.put_blob(_sha(kept), kept)
    first = uploads.create([{"path": "k", "sha256": _sha(kept), "size": 4, "mode": 420}], "a")
    clock.advance(86_400_000)
    second = uploads.create([{"path": "k", "sha256": _sha(kept), "size": 4, "mode": 420}], "a")
    assert uploads.prune(clock() - 1000) == (1, 1)  # the first upload and the unused blob
    assert uploads.missing([_sha(old), _sha(kept)]) == [_sha(old)]
    assert uploads.get(second.id).id == second.id
    with pytest.raises(NotFound):
        uploads.get(first.id)
