-- Usage added up per UTC day, account, version, kind and whether it was
-- billed, in the transaction that writes the records. Totals, invoices,
-- the spending check before a call and the catalog's use counts read these
-- for whole days and the records only for the partial days at a range's
-- edges, so their cost follows the number of days, not of calls.
CREATE TABLE usage_daily (
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    version_id     INTEGER NOT NULL REFERENCES versions(id),
    day            INTEGER NOT NULL, -- the day's first millisecond, UTC
    kind           TEXT NOT NULL,
    billed         INTEGER NOT NULL,
    records        INTEGER NOT NULL,
    bytes_in       INTEGER NOT NULL,
    bytes_out      INTEGER NOT NULL,
    device_time_us INTEGER NOT NULL,
    price_micros   INTEGER NOT NULL,
    PRIMARY KEY (account_id, version_id, day, kind, billed)
);
CREATE INDEX usage_daily_day ON usage_daily (day);

INSERT INTO usage_daily (account_id, version_id, day, kind, billed, records, bytes_in,
                         bytes_out, device_time_us, price_micros)
SELECT account_id, version_id, created_at - created_at % 86400000, kind, billed, COUNT(*),
       SUM(bytes_in), SUM(bytes_out), SUM(device_time_us), SUM(price_micros)
FROM usage GROUP BY account_id, version_id, created_at - created_at % 86400000, kind, billed;

-- Vendors' and the operator's usage pages and a range's partial days walk
-- the records by time.
CREATE INDEX usage_time ON usage (created_at, id);
