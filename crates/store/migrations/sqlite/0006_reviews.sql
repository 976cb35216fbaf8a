-- Ratings and reviews: one per user and IP (writing again replaces it),
-- with the vendor's reply.
CREATE TABLE reviews (
    id          INTEGER PRIMARY KEY,
    ip_id       INTEGER NOT NULL REFERENCES ips(id),
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    stars       INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    reply       TEXT,
    reply_at    INTEGER,
    UNIQUE (ip_id, account_id)
);
