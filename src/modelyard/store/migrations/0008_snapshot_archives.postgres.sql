-- Schema version 8 (PostgreSQL): build snapshots in the database; see
-- 0008_snapshot_archives.sqlite.sql for the why.
CREATE TABLE snapshot_archives (
    digest TEXT PRIMARY KEY,
    upload TEXT NOT NULL,
    format TEXT NOT NULL,
    archive_bytes BIGINT NOT NULL,
    chunks INTEGER NOT NULL,
    archive_sha256 TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE snapshot_chunks (
    upload TEXT NOT NULL,
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    data BYTEA NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (upload, seq)
);
CREATE INDEX snapshot_chunks_digest ON snapshot_chunks (digest);
