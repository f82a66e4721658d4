-- Schema version 10 (PostgreSQL): experiments, the files runs keep, and where a build came from;
-- see 0010_experiments.sqlite.sql for the why.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'job';
ALTER TABLE jobs ADD COLUMN label TEXT;
ALTER TABLE jobs ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';
CREATE INDEX jobs_kind ON jobs (kind, project_crn);

ALTER TABLE job_runs ADD COLUMN code_digest TEXT;

CREATE TABLE run_files (
    run_id TEXT NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    state TEXT NOT NULL,
    size BIGINT,
    sha256 TEXT,
    data BYTEA,
    error TEXT,
    tracked_ms BIGINT NOT NULL,
    kept_ms BIGINT,
    PRIMARY KEY (run_id, path)
);

ALTER TABLE builds ADD COLUMN source TEXT;
