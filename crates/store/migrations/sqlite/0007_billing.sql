-- Billing: each version's pricing terms (input per GB, free trial, plans),
-- users' plan subscriptions (a history: the plan in force at a time is
-- the latest started before it) and monthly spending limits.
ALTER TABLE versions ADD COLUMN pricing TEXT NOT NULL DEFAULT '{}';

CREATE TABLE subscriptions (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id),
    ip_id       INTEGER NOT NULL REFERENCES ips(id),
    plan        TEXT NOT NULL,
    since       INTEGER NOT NULL
);
CREATE INDEX subscriptions_by_account ON subscriptions (account_id, ip_id, since);

CREATE TABLE spending_limits (
    account_id      INTEGER PRIMARY KEY REFERENCES accounts(id),
    monthly_micros  INTEGER NOT NULL
);
