-- Ratings and reviews: one per user and IP (writing again replaces it),
-- with the vendor's reply.
CREATE TABLE reviews (
    id          BIGSERIAL PRIMARY KEY,
    ip_id       BIGINT NOT NULL REFERENCES ips(id),
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    stars       BIGINT NOT NULL CHECK (stars BETWEEN 1 AND 5),
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    reply       TEXT,
    reply_at    BIGINT,
    UNIQUE (ip_id, account_id)
);
