-- Accelhub metadata, SQLite flavour. Timestamps are Unix milliseconds.

CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('operator', 'vendor', 'user')),
    created_at  INTEGER NOT NULL
);

CREATE TABLE tokens (
    token_hash  TEXT PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE ips (
    id          INTEGER PRIMARY KEY,
    full_name   TEXT NOT NULL UNIQUE,
    vendor_id   INTEGER NOT NULL REFERENCES accounts(id),
    created_at  INTEGER NOT NULL
);

CREATE TABLE versions (
    id            INTEGER PRIMARY KEY,
    ip_id         INTEGER NOT NULL REFERENCES ips(id),
    version       TEXT NOT NULL,
    major         INTEGER NOT NULL,
    minor         INTEGER NOT NULL,
    patch         INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'verified', 'rejected')),
    summary       TEXT NOT NULL,
    description   TEXT,
    tags          TEXT NOT NULL,
    price_micros  INTEGER NOT NULL,
    limits        TEXT NOT NULL,
    implementations TEXT NOT NULL,
    tests         TEXT NOT NULL,
    report        TEXT,
    published_at  INTEGER NOT NULL,
    UNIQUE (ip_id, version)
);

CREATE TABLE deployments (
    id          TEXT PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    ip_id       INTEGER NOT NULL REFERENCES ips(id),
    version_id  INTEGER NOT NULL REFERENCES versions(id),
    created_at  INTEGER NOT NULL,
    UNIQUE (account_id, ip_id)
);

CREATE TABLE objects (
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    key         TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
);

CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts(id),
    version_id    INTEGER NOT NULL REFERENCES versions(id),
    device        TEXT NOT NULL,
    input_key     TEXT NOT NULL,
    input_size    INTEGER NOT NULL,
    params        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress      REAL NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    output_key    TEXT,
    output_size   INTEGER,
    error         TEXT,
    log           TEXT,
    lease_owner   TEXT,
    lease_expires INTEGER,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER
);
CREATE INDEX jobs_queue ON jobs (state, created_at);
CREATE INDEX jobs_account ON jobs (account_id, created_at);

CREATE TABLE job_attempts (
    job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    worker       TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    outcome      TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE usage (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    version_id     INTEGER NOT NULL REFERENCES versions(id),
    device         TEXT NOT NULL,
    bytes_in       INTEGER NOT NULL,
    bytes_out      INTEGER NOT NULL,
    device_time_us INTEGER NOT NULL,
    price_micros   INTEGER NOT NULL,
    billed         INTEGER NOT NULL,
    outcome        TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX usage_account ON usage (account_id, created_at);
CREATE INDEX usage_version ON usage (version_id, created_at);
