-- The device classes a deployment's calls prefer, in order (JSON array;
-- empty: the version's own order).
ALTER TABLE deployments ADD COLUMN devices TEXT NOT NULL DEFAULT '[]';
