-- Schema version 3 (PostgreSQL): one index of every prediction uuid ever stored, raw or rolled
-- up (see 0003_uuid_index.sqlite.sql for why). The raw table's key becomes the read order
-- (deployment_id, start_ms, uuid), which makes the old window index redundant.
CREATE TABLE prediction_uuids (
    uuid TEXT COLLATE "C" PRIMARY KEY,
    deployment_id BIGINT NOT NULL,
    start_ms BIGINT NOT NULL
);
INSERT INTO prediction_uuids (uuid, deployment_id, start_ms)
    SELECT uuid, deployment_id, start_ms FROM predictions;
INSERT INTO prediction_uuids (uuid, deployment_id, start_ms)
    SELECT r.uuid, b.deployment_id, b.bucket_start_ms
    FROM rolled_uuids r JOIN rollup_buckets b ON b.id = r.bucket_id;
DROP TABLE rolled_uuids;
ALTER TABLE predictions DROP CONSTRAINT predictions_pkey;
ALTER TABLE predictions ADD PRIMARY KEY (deployment_id, start_ms, uuid);
DROP INDEX predictions_window;
