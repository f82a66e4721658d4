-- Modelyard metrics store, schema version 1 (SQLite).
-- Identities get a small integer id so each prediction row carries 8 bytes, not three CRNs.
CREATE TABLE identities (
    id INTEGER PRIMARY KEY,
    deployment_crn TEXT NOT NULL UNIQUE,
    build_crn TEXT NOT NULL,
    model_crn TEXT NOT NULL
);
CREATE INDEX identities_build ON identities (build_crn);
CREATE INDEX identities_model ON identities (model_crn);

-- Clustered on the read order (deployment, start, uuid): window reads and rollup deletes are
-- range scans, and ingest appends near the end of each deployment's range.
-- ``delayed`` is the merged object of delayed values (NULL for most rows, so reads merge only
-- the rows that have some).
CREATE TABLE predictions (
    deployment_id INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    end_ms INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    delayed TEXT,
    PRIMARY KEY (deployment_id, start_ms, uuid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX predictions_uuid ON predictions (uuid);

-- Provenance: every delayed value as it arrived, kept after rollup.
CREATE TABLE delayed_metrics (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    tracked_ms INTEGER NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX delayed_metrics_uuid ON delayed_metrics (uuid, id);

CREATE TABLE aggregates (
    id INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX aggregates_window ON aggregates (deployment_id, start_ms, id);

CREATE TABLE rollup_buckets (
    id INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL,
    tier_ms INTEGER NOT NULL,
    bucket_start_ms INTEGER NOT NULL,
    records INTEGER NOT NULL,
    summary BLOB NOT NULL,
    UNIQUE (deployment_id, tier_ms, bucket_start_ms)
);
CREATE INDEX rollup_buckets_window ON rollup_buckets (deployment_id, bucket_start_ms, id);

-- Where each rolled-up prediction went, so delayed values for it still find their bucket.
CREATE TABLE rolled_uuids (
    uuid TEXT PRIMARY KEY,
    bucket_id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX rolled_uuids_bucket ON rolled_uuids (bucket_id);
