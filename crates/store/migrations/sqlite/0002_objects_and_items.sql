-- Object inputs an IP version declares ([[object]] in ip.toml), and job
-- progress counted in the IP's own unit (e.g. reads).
ALTER TABLE versions ADD COLUMN object_params TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN items INTEGER;
ALTER TABLE jobs ADD COLUMN items_unit TEXT;
