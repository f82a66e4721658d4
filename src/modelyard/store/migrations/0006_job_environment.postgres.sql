-- Schema version 6 (PostgreSQL): a job's own environment and monitor jobs without a launcher
-- file; see 0006_job_environment.sqlite.sql for the why.
ALTER TABLE jobs ADD COLUMN requirements TEXT;
ALTER TABLE jobs ADD COLUMN monitor TEXT;
UPDATE jobs
SET monitor = args::jsonb ->> 1, script = NULL, args = ((args::jsonb - 0) - 0)::text
WHERE script = '.modelyard/run_monitor.py' AND jsonb_array_length(args::jsonb) >= 2
    AND args::jsonb ->> 0 = 'run';
