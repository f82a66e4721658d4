-- Schema version 6 (SQLite): a job's own environment and monitor jobs without a launcher file.
--
-- ``requirements``: a requirements file inside the job's project; runs use the environment built
-- for it (``serving.ensure_environment``, shared with model builds), NULL for the base
-- interpreter. ``monitor``: a monitor spec inside the project; such a job runs
-- ``python -m modelyard.monitors run SPEC`` and has no script (before version 6 it ran a
-- launcher written to ``.modelyard/run_monitor.py`` in the project, which a project ignoring
-- ``.modelyard/`` left out of its snapshot). Monitor jobs written before are converted here.
ALTER TABLE jobs ADD COLUMN requirements TEXT;
ALTER TABLE jobs ADD COLUMN monitor TEXT;
UPDATE jobs
SET monitor = json_extract(args, '$[1]'), script = NULL, args = json_remove(args, '$[0]', '$[0]')
WHERE script = '.modelyard/run_monitor.py' AND json_array_length(args) >= 2
    AND json_extract(args, '$[0]') = 'run';
