-- Modelyard registry, schema version 2 (SQLite): models, builds, deployments, API keys and
-- replica events, in the metrics store's database so one backup and one migration series cover
-- everything. Keys are stored only as SHA-256 hex digests plus a short display prefix.
-- Foreign keys are declared for readers; the registry checks and deletes in the right order
-- itself, since SQLite enforces them only per connection (PRAGMA foreign_keys).
CREATE TABLE models (
    crn TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    access_key_hash TEXT NOT NULL UNIQUE,
    access_key_prefix TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

-- ``seq`` orders builds and deployments of one model by arrival (created_ms may tie).
CREATE TABLE builds (
    seq INTEGER PRIMARY KEY,
    crn TEXT NOT NULL UNIQUE,
    model_crn TEXT NOT NULL REFERENCES models (crn),
    digest TEXT NOT NULL,
    file TEXT NOT NULL,
    function TEXT NOT NULL,
    batch_function TEXT,
    python TEXT NOT NULL,
    env_key TEXT NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT,
    log_path TEXT,
    example TEXT,
    requirements TEXT,
    created_ms INTEGER NOT NULL
);
CREATE INDEX builds_model ON builds (model_crn, seq);

CREATE TABLE deployments (
    seq INTEGER PRIMARY KEY,
    crn TEXT NOT NULL UNIQUE,
    model_crn TEXT NOT NULL REFERENCES models (crn),
    build_crn TEXT NOT NULL REFERENCES builds (crn),
    replicas INTEGER NOT NULL,
    env TEXT NOT NULL,
    memory_bytes INTEGER,
    cpus REAL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX deployments_model ON deployments (model_crn, seq);
-- At most one active deployment per model, whatever a buggy caller does.
CREATE UNIQUE INDEX deployments_one_active ON deployments (model_crn) WHERE state = 'active';

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    role TEXT NOT NULL,
    scope TEXT,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER
);

CREATE TABLE replica_events (
    id INTEGER PRIMARY KEY,
    deployment_crn TEXT NOT NULL,
    replica_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    details TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX replica_events_deployment ON replica_events (deployment_crn, id);
