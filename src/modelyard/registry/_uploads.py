"""Uploaded project folders: file contents by sha256 (``upload_blobs``) and manifests
(``uploads``), in the database every server shares.

A blob is stored once whatever folder or deploy it belongs to, and only after its bytes hashed
to its name: a client that sends half a file stores nothing, and a blob stored by an upload that
never finished is harmless (content-addressed) until ``prune`` removes it. An upload row is
written last, in one transaction that finds every blob it names, so an upload either exists
whole or not at all. The manifest itself is checked above (``builds.upload.check_manifest``);
this module stores what it is given.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry._db import Clock, Cursor, Db

__all__ = ["Upload", "Uploads"]

_IN_BATCH = 500  # digests per IN (...) query
_COLUMNS = "id, manifest, files, total_bytes, created_by, created_ms"


@dataclass(frozen=True, slots=True)
class Upload:
    """A stored upload: its ``manifest`` entries (dicts: path, sha256, size, mode, or path and
    link), how many ``files`` and bytes, who sent it and when."""

    id: str
    manifest: list[dict[str, Any]]
    files: int
    total_bytes: int
    created_by: str
    created_ms: int


def _upload(row: Any) -> Upload:
    return Upload(
        id=row[0],
        manifest=orjson.loads(row[1]),
        files=int(row[2]),
        total_bytes=int(row[3]),
        created_by=row[4],
        created_ms=int(row[5]),
    )


class Uploads:
    """``registry.uploads``: blobs by digest and the manifests that assemble them."""

    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    def _present(self, cur: Cursor, digests: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(digests), _IN_BATCH):
            batch = list(digests[start : start + _IN_BATCH])
            marks = ", ".join("?" * len(batch))
            rows = self._db.exec(
                cur, f"SELECT digest FROM upload_blobs WHERE digest IN ({marks})", batch
            ).fetchall()
            found.update(row[0] for row in rows)
        return found

    def missing(self, digests: Sequence[str]) -> list[str]:
        """The digests of ``digests`` no blob is stored for, in the order given, each once."""
        unique = list(dict.fromkeys(digests))
        with self._db.read() as cur:
            present = self._present(cur, unique)
        return [d for d in unique if d not in present]

    def put_blob(self, digest: str, data: bytes) -> bool:
        """Store ``data`` as the blob ``digest``; False when it was stored already. InvalidInput
        naming both digests when the bytes hash to another."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise InvalidInput(
                f"the bytes sent for blob {digest} hash to {actual}; send the file's exact "
                "bytes under its sha256",
                digest=digest,
                actual=actual,
            )
        now = self._now()

        def insert(cur: Cursor) -> bool:
            done = self._db.exec(
                cur,
                "INSERT INTO upload_blobs (digest, size, data, created_ms, used_ms) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                (digest, len(data), data, now, now),
            ).rowcount
            return bool(done)

        return self._db.write(insert)

    def read_blob(self, digest: str) -> bytes:
        """The stored bytes of ``digest``; NotFound naming it."""
        with self._db.read() as cur:
            row = self._db.exec(
                cur, "SELECT data FROM upload_blobs WHERE digest = ?", (digest,)
            ).fetchone()
        if row is None:
            raise NotFound(
                f"blob {digest} is not stored (pruned since the upload?); upload the folder again",
                digest=digest,
            )
        return bytes(row[0])

    def create(self, manifest: Sequence[dict[str, Any]], created_by: str) -> Upload:
        """Store the (checked) ``manifest`` as a new upload, once every blob it names is
        stored; InvalidInput naming the first entry whose blob is not (nothing is written)."""
        entries = [dict(e) for e in manifest]
        files = sum(1 for e in entries if "sha256" in e)
        total = sum(int(e.get("size", 0)) for e in entries)
        upload = Upload(str(uuid.uuid4()), entries, files, total, created_by, self._now())
        needed = list(dict.fromkeys(e["sha256"] for e in entries if "sha256" in e))

        def insert(cur: Cursor) -> None:
            present = self._present(cur, needed)
            for e in entries:
                if "sha256" in e and e["sha256"] not in present:
                    raise InvalidInput(
                        f"manifest entry {e['path']!r} names blob {e['sha256']}, which the "
                        "server does not have; send it first (PUT /api/v1/uploads/blobs/"
                        "<sha256>)",
                        path=e["path"],
                        digest=e["sha256"],
                    )
            for start in range(0, len(needed), _IN_BATCH):
                batch = needed[start : start + _IN_BATCH]
                marks = ", ".join("?" * len(batch))
                self._db.exec(
                    cur,
                    f"UPDATE upload_blobs SET used_ms = ? WHERE digest IN ({marks})",
                    [upload.created_ms, *batch],
                )
            self._db.exec(
                cur,
                f"INSERT INTO uploads ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    upload.id,
                    orjson.dumps(entries).decode(),
                    files,
                    total,
                    created_by,
                    upload.created_ms,
                ),
            )

        self._db.write(insert)
        return upload

    def get(self, upload_id: str) -> Upload:
        """The upload ``upload_id``; NotFound naming it."""
        with self._db.read() as cur:
            row = self._db.exec(
                cur, f"SELECT {_COLUMNS} FROM uploads WHERE id = ?", (str(upload_id),)
            ).fetchone()
        if row is None:
            raise NotFound(
                f"upload {str(upload_id)[:100]!r} does not exist; send the folder with "
                "POST /api/v1/uploads (the CLI's deploy does) and use the id it answers",
                upload=str(upload_id)[:100],
            )
        return _upload(row)

    def count_blobs(self) -> int:
        """How many blobs are stored (tests and the benchmark count what was sent)."""
        with self._db.read() as cur:
            row = self._db.exec(cur, "SELECT COUNT(*) FROM upload_blobs").fetchone()
        return int(row[0])

    def prune(self, before_ms: int) -> tuple[int, int]:
        """Remove uploads made before ``before_ms`` and blobs no upload used since; the
        numbers of uploads and blobs removed. Blobs are content-addressed, so removing one an
        old upload named only means a later upload sends it again."""

        def remove(cur: Cursor) -> tuple[int, int]:
            uploads = self._db.exec(
                cur, "DELETE FROM uploads WHERE created_ms < ?", (before_ms,)
            ).rowcount
            blobs = self._db.exec(
                cur, "DELETE FROM upload_blobs WHERE used_ms < ?", (before_ms,)
            ).rowcount
            return int(uploads), int(blobs)

        return self._db.write(remove)
