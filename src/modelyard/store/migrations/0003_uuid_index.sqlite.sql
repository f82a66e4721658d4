-- Schema version 3 (SQLite): one index of every prediction uuid ever stored, raw or rolled up.
--
-- Version 1 kept a unique uuid index on the raw rows and moved each uuid into ``rolled_uuids``
-- (uuid -> bucket id) when its row was rolled up, rewriting those entries again whenever buckets
-- coarsened. Both are random-key B-tree writes, and they made rollup about as costly as ingest.
-- Now ``prediction_uuids`` maps a uuid to (deployment, start_ms) once, at ingest, and is never
-- touched again: duplicates are refused by its primary key, a raw row is found by the raw
-- table's key (deployment_id, start_ms, uuid), and a rolled-up one by the bucket covering its
-- start_ms. Rollup then deletes raw rows by key range and coarsening only merges buckets.
CREATE TABLE prediction_uuids (
    uuid TEXT PRIMARY KEY,
    deployment_id INTEGER NOT NULL,
    start_ms INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO prediction_uuids (uuid, deployment_id, start_ms)
    SELECT uuid, deployment_id, start_ms FROM predictions;
INSERT INTO prediction_uuids (uuid, deployment_id, start_ms)
    SELECT r.uuid, b.deployment_id, b.bucket_start_ms
    FROM rolled_uuids r JOIN rollup_buckets b ON b.id = r.bucket_id;
DROP TABLE rolled_uuids;
DROP INDEX predictions_uuid;
