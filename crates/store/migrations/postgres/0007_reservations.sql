-- Dedicated deployments (a plan by the device-hour) are metered into usage
-- records of kind 'reserve'; this is how far each deployment is metered.
ALTER TABLE deployments ADD COLUMN metered_until BIGINT;
