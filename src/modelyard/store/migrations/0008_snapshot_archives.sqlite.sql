-- Schema version 8 (SQLite): build snapshots in the database, so every server sharing it can
-- run every build (docs/builds.md, "Shared by every server").
--
-- ``snapshot_archives``: one row per snapshot digest whose archive is complete, pointing at the
-- upload that holds its bytes. ``snapshot_chunks``: an upload's archive in order, a chunk a row
-- (1 MiB by default). An upload writes its chunks first and its archive row last, so a reader
-- never sees half an archive; two servers storing the same digest at once each write their own
-- upload, one archive row wins and the loser removes its chunks. Chunks left by an upload that
-- died are removed by a later upload of the same digest.
CREATE TABLE snapshot_archives (
    digest TEXT PRIMARY KEY,
    upload TEXT NOT NULL,
    format TEXT NOT NULL,
    archive_bytes INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    archive_sha256 TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE snapshot_chunks (
    upload TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    data BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (upload, seq)
);
CREATE INDEX snapshot_chunks_digest ON snapshot_chunks (digest);
