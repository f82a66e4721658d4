-- Schema version 4 (SQLite): jobs, their runs, slot claims and run metrics (issue 4).
--
-- ``jobs`` holds exactly one schedule per row (cron + timezone, every_ms, after_id or manual),
-- which a CHECK backs up. JSON columns (args, env, notify, notify_on) are TEXT, as in 0002.
-- ``job_slots`` is what makes a (job, slot) run at most once across restarts and servers: the
-- scheduler that inserts the row (primary key job_id, slot_ms, attempt) owns the slot until
-- ``lease_until_ms``; ``started_ms``/``started_run_id`` are set once, when a run of the slot
-- starts, after which the claim is never taken over. Foreign keys are declared for readers; the
-- registry deletes in the right order itself.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    project TEXT,
    script TEXT,
    args TEXT NOT NULL,
    cron TEXT,
    timezone TEXT NOT NULL,
    every_ms INTEGER,
    after_id TEXT REFERENCES jobs (id),
    manual INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    retry_backoff_ms INTEGER NOT NULL,
    env TEXT NOT NULL,
    overlap TEXT NOT NULL,
    catch_up TEXT NOT NULL,
    notify TEXT NOT NULL,
    notify_on TEXT NOT NULL,
    paused INTEGER NOT NULL,
    builtin INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    CHECK ((CASE WHEN cron IS NULL THEN 0 ELSE 1 END) + (CASE WHEN every_ms IS NULL THEN 0 ELSE 1 END)
        + (CASE WHEN after_id IS NULL THEN 0 ELSE 1 END) + manual = 1)
);
CREATE INDEX jobs_after ON jobs (after_id);

-- ``seq`` orders runs by arrival (queued_ms may tie).
CREATE TABLE job_runs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    slot_ms INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    queued_ms INTEGER NOT NULL,
    started_ms INTEGER,
    ended_ms INTEGER,
    log_path TEXT,
    api_key_id TEXT,
    parent_run_id TEXT
);
CREATE INDEX job_runs_job ON job_runs (job_id, seq);
CREATE INDEX job_runs_slot ON job_runs (job_id, slot_ms, attempt);
CREATE INDEX job_runs_unfinished ON job_runs (state) WHERE state IN ('queued', 'running');
CREATE INDEX job_runs_ended ON job_runs (ended_ms);

CREATE TABLE job_slots (
    job_id TEXT NOT NULL,
    slot_ms INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    owner TEXT NOT NULL,
    lease_until_ms INTEGER NOT NULL,
    claimed_ms INTEGER NOT NULL,
    started_ms INTEGER,
    started_run_id TEXT,
    PRIMARY KEY (job_id, slot_ms, attempt)
) WITHOUT ROWID;

CREATE TABLE run_metrics (
    seq INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    tracked_ms INTEGER NOT NULL
);
CREATE INDEX run_metrics_run ON run_metrics (run_id, seq);
