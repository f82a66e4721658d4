-- Schema version 11 (SQLite): connections to where ground truth and reference data live, and the
-- label imports that read them.
--
-- ``connections`` is one row per named connection of a project: its ``kind`` (postgresql, mysql,
-- sqlite, s3, files, nats, rabbitmq), its address and options in the clear (``options``, JSON),
-- and which project secret holds each credential (``secrets``, JSON: option name -> secret name).
-- Credential values are never stored here: they stay encrypted in ``secrets``.
--
-- ``label_sources`` keeps, per monitor, the watermark of its ``labels:`` source (JSON, opaque to
-- the registry: what the connector needs to read only what is new), advanced only after the
-- delayed metrics it read are stored. ``label_imports`` records each read: rows read, matched,
-- unmatched (with a sample of unmatched ids), duplicates, or the error that stopped it.
CREATE TABLE connections (
    project_crn TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    options TEXT NOT NULL,
    secrets TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (project_crn, name)
);

CREATE TABLE label_sources (
    monitor TEXT PRIMARY KEY,
    project_crn TEXT NOT NULL,
    connection TEXT NOT NULL,
    watermark TEXT,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE label_imports (
    id INTEGER PRIMARY KEY,
    monitor TEXT NOT NULL,
    connection TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    rows_read INTEGER NOT NULL,
    matched INTEGER NOT NULL,
    unmatched INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    unmatched_sample TEXT NOT NULL,
    watermark_before TEXT,
    watermark_after TEXT,
    error TEXT
);
CREATE INDEX label_imports_monitor ON label_imports (monitor, id);
