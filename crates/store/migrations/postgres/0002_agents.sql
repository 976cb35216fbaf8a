-- Remote agents: the tokens the operator issues them, and the nodes they
-- register with their devices and last heartbeat.
CREATE TABLE agent_tokens (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked     BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE nodes (
    name          TEXT PRIMARY KEY,
    agent_id      BIGINT NOT NULL REFERENCES agent_tokens(id),
    devices       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('up', 'dead')),
    registered_at BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL
);
