-- Autoscaling: each deployment's scaling spec (JSON), the replicas the
-- autoscaler set, since when demand has been below them, and its
-- decisions.
ALTER TABLE deployments ADD COLUMN scaling TEXT NOT NULL
    DEFAULT '{"min":0,"max":16,"target":1,"scale_down_delay_secs":60}';
ALTER TABLE deployments ADD COLUMN replicas BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN low_since BIGINT;

CREATE TABLE scaling_events (
    id             BIGSERIAL PRIMARY KEY,
    deployment_id  TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    at             BIGINT NOT NULL,
    from_replicas  BIGINT NOT NULL,
    to_replicas    BIGINT NOT NULL,
    reason         TEXT NOT NULL
);
CREATE INDEX scaling_events_by_deployment ON scaling_events (deployment_id, id);
