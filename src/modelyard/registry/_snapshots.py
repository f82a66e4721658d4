"""Build snapshot archives in the database, so every server sharing it can run every build.

A build's snapshot folder lives in the home of the server that built it; another server on the
same database has only the registry's build row. The archive of each snapshot
(``modelyard.builds.archive``) is stored here, keyed by its digest, chunk by chunk: written once
by the server that built it, read by any server that lacks the folder.

Writing is crash-safe without one long transaction (which would hold the store's connection,
and with it every registry read, for the whole upload): the chunks go under a fresh ``upload``
id in transactions of a few MiB, and the ``snapshot_archives`` row that makes them visible is
inserted last. Two servers storing one digest at once both upload; the first archive row wins,
the other removes its chunks. Chunks of an upload that died before its row are removed by the
next upload of the same digest once they are an hour old.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry._db import Clock, Cursor, Db

__all__ = ["ABANDONED_MS", "SnapshotArchive", "SnapshotArchives", "drop_unreferenced"]

ABANDONED_MS = 3_600_000  # chunks of an upload this old without an archive row were abandoned
_BATCH_BYTES = 8 * 1024 * 1024  # chunks committed together (the connection is held this long)
_COLUMNS = "digest, upload, format, archive_bytes, chunks, archive_sha256, created_ms"


@dataclass(frozen=True, slots=True)
class SnapshotArchive:
    """A complete stored archive: ``chunks`` rows of ``upload`` holding ``archive_bytes``."""

    digest: str
    upload: str
    format: str
    archive_bytes: int
    chunks: int
    archive_sha256: str
    created_ms: int


def _archive(row: Any) -> SnapshotArchive:
    return SnapshotArchive(
        digest=row[0],
        upload=row[1],
        format=row[2],
        archive_bytes=int(row[3]),
        chunks=int(row[4]),
        archive_sha256=row[5],
        created_ms=int(row[6]),
    )


def _check_digest(digest: object) -> str:
    if (
        not isinstance(digest, str)
        or len(digest) != 64
        or any(c not in "0123456789abcdef" for c in digest)
    ):
        raise InvalidInput(
            f"snapshot digest {digest!r} is not accepted; expected the 64 lowercase hex "
            "characters of a sha256 (a build's digest)",
            digest=str(digest)[:100],
        )
    return digest


class SnapshotArchives:
    """``registry.snapshots``: store, find, read and delete snapshot archives by digest."""

    def __init__(self, db: Db, clock: Clock) -> None:
        self._db = db
        self._now = clock

    def get(self, digest: str) -> SnapshotArchive | None:
        """The complete archive of ``digest``, or None when none is stored."""
        digest = _check_digest(digest)
        with self._db.read() as cur:
            row = self._db.exec(
                cur, f"SELECT {_COLUMNS} FROM snapshot_archives WHERE digest = ?", (digest,)
            ).fetchone()
        return None if row is None else _archive(row)

    def put(self, digest: str, chunks: Iterable[bytes], format: str) -> SnapshotArchive:
        """Store the archive ``chunks`` (in order) of ``digest`` unless one is stored already;
        return the stored one. An error while ``chunks`` is iterated (the packer found the
        folder changed) stores nothing visible."""
        digest = _check_digest(digest)
        found = self.get(digest)
        if found is not None:
            return found
        self._sweep(digest)
        upload = str(uuid.uuid4())
        h = hashlib.sha256()
        seq = total = 0
        batch: list[tuple[int, bytes]] = []
        batch_bytes = 0
        try:
            for chunk in chunks:
                h.update(chunk)
                batch.append((seq, bytes(chunk)))
                seq += 1
                total += len(chunk)
                batch_bytes += len(chunk)
                if batch_bytes >= _BATCH_BYTES:
                    self._write_chunks(upload, digest, batch)
                    batch, batch_bytes = [], 0
            if batch:
                self._write_chunks(upload, digest, batch)
            archive = SnapshotArchive(digest, upload, format, total, seq, h.hexdigest(), 0)
            return self._publish(archive)
        except BaseException:
            self._drop_upload(upload)
            raise

    def _write_chunks(self, upload: str, digest: str, batch: list[tuple[int, bytes]]) -> None:
        now = self._now()

        def insert(cur: Cursor) -> None:
            for seq, data in batch:
                self._db.exec(
                    cur,
                    "INSERT INTO snapshot_chunks (upload, seq, digest, data, created_ms) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (upload, seq, digest, data, now),
                )

        self._db.write(insert)

    def _publish(self, archive: SnapshotArchive) -> SnapshotArchive:
        """Insert the archive row (the upload becomes visible), unless another upload of the
        same digest won meanwhile: then drop ours and return theirs."""
        now = self._now()

        def insert(cur: Cursor) -> SnapshotArchive | None:
            row = self._db.exec(
                cur,
                f"SELECT {_COLUMNS} FROM snapshot_archives WHERE digest = ?{self._db.for_update}",
                (archive.digest,),
            ).fetchone()
            if row is not None:
                return _archive(row)
            self._db.exec(
                cur,
                f"INSERT INTO snapshot_archives ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (digest) DO NOTHING",
                (
                    archive.digest,
                    archive.upload,
                    archive.format,
                    archive.archive_bytes,
                    archive.chunks,
                    archive.archive_sha256,
                    now,
                ),
            )
            return None

        winner = self._db.write(insert)
        if winner is not None:
            self._drop_upload(archive.upload)
            return winner
        stored = self.get(archive.digest)
        if stored is None or stored.upload != archive.upload:  # lost a race to an insert
            self._drop_upload(archive.upload)
        if stored is None:  # pragma: no cover - deleted between our insert and this read
            raise NotFound(f"snapshot archive {archive.digest} vanished while it was stored")
        return stored

    def _drop_upload(self, upload: str) -> None:
        self._db.write(
            lambda cur: self._db.exec(
                cur, "DELETE FROM snapshot_chunks WHERE upload = ?", (upload,)
            )
        )

    def _sweep(self, digest: str) -> None:
        """Remove chunks of ``digest`` that no archive row points to and that are old enough
        to belong to an upload that died (a live upload of the same digest is younger)."""
        cutoff = self._now() - ABANDONED_MS
        self._db.write(
            lambda cur: self._db.exec(
                cur,
                "DELETE FROM snapshot_chunks WHERE digest = ? AND created_ms < ? AND upload NOT "
                "IN (SELECT upload FROM snapshot_archives WHERE digest = ?)",
                (digest, cutoff, digest),
            )
        )

    def read(self, digest: str) -> Iterator[bytes]:
        """The stored archive's chunks in order, each read in its own short transaction (the
        store's connection is never held for the whole archive). NotFound when none is stored;
        InvalidInput when the rows read do not hash to the stored checksum."""
        archive = self.get(digest)
        if archive is None:
            raise NotFound(
                f"no archive of snapshot {digest} is stored in the database; deploy the model "
                "again (through any server) to store it",
                digest=digest,
            )
        return self._chunks(archive)

    def _chunks(self, archive: SnapshotArchive) -> Iterator[bytes]:
        h = hashlib.sha256()
        for seq in range(archive.chunks):
            with self._db.read() as cur:
                row = self._db.exec(
                    cur,
                    "SELECT data FROM snapshot_chunks WHERE upload = ? AND seq = ?",
                    (archive.upload, seq),
                ).fetchone()
            if row is None:
                raise InvalidInput(
                    f"chunk {seq} of the archive of snapshot {archive.digest} is missing from "
                    "the database; deploy the model again to store it again",
                    digest=archive.digest,
                )
            data = bytes(row[0])
            h.update(data)
            yield data
        if h.hexdigest() != archive.archive_sha256:
            raise InvalidInput(
                f"the archive of snapshot {archive.digest} read from the database does not "
                f"match its checksum {archive.archive_sha256}; deploy the model again to store "
                "it again",
                digest=archive.digest,
            )

    def list(self) -> list[SnapshotArchive]:
        """Every stored archive, oldest first."""
        with self._db.read() as cur:
            rows = self._db.exec(
                cur, f"SELECT {_COLUMNS} FROM snapshot_archives ORDER BY created_ms, digest"
            ).fetchall()
        return [_archive(row) for row in rows]

    def delete(self, digest: str) -> bool:
        """Remove the archive of ``digest`` (its row and chunks); False when none was stored."""
        digest = _check_digest(digest)

        def remove(cur: Cursor) -> bool:
            gone = self._db.exec(
                cur, "DELETE FROM snapshot_archives WHERE digest = ?", (digest,)
            ).rowcount
            self._db.exec(cur, "DELETE FROM snapshot_chunks WHERE digest = ?", (digest,))
            return bool(gone)

        return self._db.write(remove)


def drop_unreferenced(db: Db, cur: Cursor, digests: Iterable[str]) -> int:
    """Inside a transaction that just deleted builds: remove the archives of ``digests`` that no
    build references any more (snapshots are content-addressed, so another model's build may
    share one). Returns how many archives went."""
    gone = 0
    for digest in sorted(set(digests)):
        used = db.exec(cur, "SELECT 1 FROM builds WHERE digest = ? LIMIT 1", (digest,)).fetchone()
        if used is not None:
            continue
        gone += db.exec(cur, "DELETE FROM snapshot_archives WHERE digest = ?", (digest,)).rowcount
        db.exec(cur, "DELETE FROM snapshot_chunks WHERE digest = ?", (digest,))
    return gone
