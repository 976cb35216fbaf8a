-- Each deployment's queued and running jobs are counted on every
-- autoscaling tick: by account and state, not by reading every job the
-- account ever ran.
CREATE INDEX jobs_account_state ON jobs (account_id, state);
