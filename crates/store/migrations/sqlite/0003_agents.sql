-- Remote agents: the tokens the operator issues them, and the nodes they
-- register with their devices and last heartbeat.
CREATE TABLE agent_tokens (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE nodes (
    name          TEXT PRIMARY KEY,
    agent_id      INTEGER NOT NULL REFERENCES agent_tokens(id),
    devices       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('up', 'dead')),
    registered_at INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);
