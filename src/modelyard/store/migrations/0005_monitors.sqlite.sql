-- Schema version 5 (SQLite): monitors (issue 5): reference samples, per-window results, alerts.
--
-- ``aggregates.source`` names who wrote an aggregate (``monitor:<name>`` for a monitor; NULL for
-- plain ``add_aggregate`` calls), so ``replace_aggregate`` can swap one writer's result for a
-- window without touching anyone else's: re-running a window replaces its record.
ALTER TABLE aggregates ADD COLUMN source TEXT;
CREATE INDEX aggregates_source ON aggregates (deployment_id, start_ms, end_ms, source);

-- Late labels are found by when they arrived: the delayed values tracked since a monitor's last
-- run are an index range here, not a scan of every delayed value ever stored.
CREATE INDEX delayed_metrics_tracked ON delayed_metrics (tracked_ms);

-- A reference sample: columnar JSON (orjson), zlib-compressed; never pickle.
CREATE TABLE monitor_references (
    deployment_crn TEXT NOT NULL,
    name TEXT NOT NULL,
    rows INTEGER NOT NULL,
    total_rows INTEGER NOT NULL,
    columns TEXT NOT NULL,
    data BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (deployment_crn, name)
);

-- One row per (monitor, window): the latest result, replaced when the window is recomputed.
CREATE TABLE monitor_results (
    monitor TEXT NOT NULL,
    deployment_crn TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    n INTEGER NOT NULL,
    labelled INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    computed_ms INTEGER NOT NULL,
    PRIMARY KEY (monitor, start_ms)
);

-- Per monitor: delayed values tracked up to ``labels_through_ms`` have been looked at.
CREATE TABLE monitor_state (
    monitor TEXT PRIMARY KEY,
    deployment_crn TEXT NOT NULL,
    labels_through_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

-- One row per episode of a rule: fired at a window, resolved at a later one (or still firing).
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    monitor TEXT NOT NULL,
    deployment_crn TEXT NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    first_window_start_ms INTEGER NOT NULL,
    last_window_end_ms INTEGER NOT NULL,
    value REAL,
    breaching TEXT NOT NULL,
    fired_ms INTEGER NOT NULL,
    resolved_ms INTEGER,
    resolved_window_start_ms INTEGER,
    UNIQUE (monitor, rule, first_window_start_ms)
);
CREATE INDEX alerts_state ON alerts (state, id);
