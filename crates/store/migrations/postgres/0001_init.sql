-- Accelhub metadata, PostgreSQL flavour (same tables as SQLite's, with the
-- columns of its later migrations). Timestamps are Unix milliseconds.

CREATE TABLE accounts (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('operator', 'vendor', 'user')),
    created_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    token_hash  TEXT PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE ips (
    id          BIGSERIAL PRIMARY KEY,
    full_name   TEXT NOT NULL UNIQUE,
    vendor_id   BIGINT NOT NULL REFERENCES accounts(id),
    created_at  BIGINT NOT NULL
);

CREATE TABLE versions (
    id            BIGSERIAL PRIMARY KEY,
    ip_id         BIGINT NOT NULL REFERENCES ips(id),
    version       TEXT NOT NULL,
    major         BIGINT NOT NULL,
    minor         BIGINT NOT NULL,
    patch         BIGINT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'verified', 'rejected')),
    summary       TEXT NOT NULL,
    description   TEXT,
    tags          TEXT NOT NULL,
    price_micros  BIGINT NOT NULL,
    limits        TEXT NOT NULL,
    implementations TEXT NOT NULL,
    tests         TEXT NOT NULL,
    report        TEXT,
    published_at  BIGINT NOT NULL,
    object_params TEXT NOT NULL DEFAULT '[]',
    UNIQUE (ip_id, version)
);

CREATE TABLE deployments (
    id          TEXT PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    ip_id       BIGINT NOT NULL REFERENCES ips(id),
    version_id  BIGINT NOT NULL REFERENCES versions(id),
    created_at  BIGINT NOT NULL,
    UNIQUE (account_id, ip_id)
);

CREATE TABLE objects (
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    key         TEXT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, key)
);

CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES accounts(id),
    version_id    BIGINT NOT NULL REFERENCES versions(id),
    device        TEXT NOT NULL,
    input_key     TEXT NOT NULL,
    input_size    BIGINT NOT NULL,
    params        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress      DOUBLE PRECISION NOT NULL DEFAULT 0,
    attempts      BIGINT NOT NULL DEFAULT 0,
    max_attempts  BIGINT NOT NULL,
    output_key    TEXT,
    output_size   BIGINT,
    error         TEXT,
    log           TEXT,
    lease_owner   TEXT,
    lease_expires BIGINT,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    items         BIGINT,
    items_unit    TEXT
);
CREATE INDEX jobs_queue ON jobs (state, created_at);
CREATE INDEX jobs_account ON jobs (account_id, created_at);

CREATE TABLE job_attempts (
    job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt      BIGINT NOT NULL,
    worker       TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    outcome      TEXT NOT NULL,
    error        TEXT,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE usage (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    account_id     BIGINT NOT NULL REFERENCES accounts(id),
    version_id     BIGINT NOT NULL REFERENCES versions(id),
    device         TEXT NOT NULL,
    bytes_in       BIGINT NOT NULL,
    bytes_out      BIGINT NOT NULL,
    device_time_us BIGINT NOT NULL,
    price_micros   BIGINT NOT NULL,
    billed         BIGINT NOT NULL,
    outcome        TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX usage_account ON usage (account_id, created_at);
CREATE INDEX usage_version ON usage (version_id, created_at);
