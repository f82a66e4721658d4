-- Schema version 9 (SQLite): people, projects, roles, the audit log, secrets and uploads.
--
-- ``users`` sign in with a name and an argon2id password hash (NULL: no password yet, keys only);
-- ``is_admin`` makes a server administrator; ``disabled_ms`` ends sessions and keys at once.
-- ``teams`` group users; a team can be a project's collaborator like a user.
-- ``projects`` own models, jobs, monitors, alerts and secrets; names are unique per owner and
-- the identifier is ``crn:modelyard:project/<uuid>``. ``collaborators`` give a user or a team
-- a role in a project: viewer < operator < contributor < admin (the owner is always admin).
-- Rows written before version 9 get their project at the server's next start (the ``default``
-- project owned by the ``admin`` user: ``registry.people.bootstrap``), since a SQL migration
-- cannot mint the uuids and the password it needs.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email TEXT,
    password_hash TEXT,
    is_admin INTEGER NOT NULL,
    disabled_ms INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);

CREATE TABLE team_members (
    team_id TEXT NOT NULL REFERENCES teams (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    added_ms INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
) WITHOUT ROWID;
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE projects (
    crn TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    UNIQUE (owner_id, name)
);
CREATE INDEX projects_name ON projects (name);

-- kind: 'user' or 'team'; principal_id: users.id or teams.id.
CREATE TABLE collaborators (
    project_crn TEXT NOT NULL REFERENCES projects (crn),
    kind TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    role TEXT NOT NULL,
    added_ms INTEGER NOT NULL,
    PRIMARY KEY (project_crn, kind, principal_id)
) WITHOUT ROWID;
CREATE INDEX collaborators_principal ON collaborators (kind, principal_id);

-- A key belongs to a user and acts with that user's rights, optionally narrowed to one project
-- (project_crn) and to a role below the user's own (project_role). Run keys (role 'run') have
-- no user: they are minted per deployment and per run and scoped to them.
ALTER TABLE api_keys ADD COLUMN user_id TEXT;
ALTER TABLE api_keys ADD COLUMN project_crn TEXT;
ALTER TABLE api_keys ADD COLUMN project_role TEXT;
CREATE INDEX api_keys_user ON api_keys (user_id);

ALTER TABLE models ADD COLUMN project_crn TEXT;
CREATE INDEX models_project ON models (project_crn);
ALTER TABLE jobs ADD COLUMN project_crn TEXT;
CREATE INDEX jobs_project ON jobs (project_crn);

-- Names of project secrets a deployment's replicas or a job's runs get as environment variables
-- (a JSON list; values are read at start, never stored here).
ALTER TABLE deployments ADD COLUMN secrets TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN secrets TEXT NOT NULL DEFAULT '[]';

-- Append-only through the API: who (actor: a user name, or 'key:<id>' for a run key), what
-- (action), which object, in which project, from which address, and the outcome
-- ('ok', 'denied', 'failed') with the HTTP status. Never a secret or a key.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    key_id TEXT,
    action TEXT NOT NULL,
    object TEXT,
    project_crn TEXT,
    address TEXT,
    outcome TEXT NOT NULL,
    status INTEGER,
    details TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
CREATE INDEX audit_log_project ON audit_log (project_crn, seq);

-- Secret values encrypted (Fernet: AES-128-CBC with an HMAC-SHA256 tag) with a key kept outside the
-- database (the home's secrets.key, or the operator's MODELYARD_SECRETS_KEY).
CREATE TABLE secrets (
    project_crn TEXT NOT NULL REFERENCES projects (crn),
    name TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    set_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (project_crn, name)
) WITHOUT ROWID;

-- Deploy from a laptop: file contents by SHA-256 (sent once, whatever folder or deploy they
-- belong to), and uploads: a manifest of path -> digest and mode that a build assembles.
CREATE TABLE upload_blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    used_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    files INTEGER NOT NULL,
    total_bytes INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
