-- Schema version 10 (SQLite): experiments, the files runs keep, and where a build came from.
--
-- An experiment is a run of one script with its arguments in a snapshot of a project. It is
-- carried out by the job runner like any job run, so it is recorded as a one-off manual job of
-- ``kind`` 'experiment' (jobs made before are 'job'), with its display ``label`` and the
-- ``resources`` it asked for (JSON: cpus, memory, gpus, accelerator). ``job_runs.code_digest``
-- is the sha256 digest of the snapshot a run executed: the code version runs are compared by.
--
-- ``run_files`` holds the files a run kept with ``track_file``: a row is written 'tracked' when
-- the script names the file, and becomes 'kept' (with its bytes) or 'failed' (with the reason)
-- when the runner collects it after the process ends. Files go with their run.
--
-- ``builds.source`` (JSON, NULL for a build of a project's own predict function) says where an
-- imported build came from: an experiment run (--from-run), an MLflow model, an ONNX file or a
-- scikit-learn file.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'job';
ALTER TABLE jobs ADD COLUMN label TEXT;
ALTER TABLE jobs ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';
CREATE INDEX jobs_kind ON jobs (kind, project_crn);

ALTER TABLE job_runs ADD COLUMN code_digest TEXT;

CREATE TABLE run_files (
    run_id TEXT NOT NULL,
    path TEXT NOT NULL,
    state TEXT NOT NULL,
    size INTEGER,
    sha256 TEXT,
    data BLOB,
    error TEXT,
    tracked_ms INTEGER NOT NULL,
    kept_ms INTEGER,
    PRIMARY KEY (run_id, path)
);

ALTER TABLE builds ADD COLUMN source TEXT;
