-- Named outputs (issue 16): what a version declares ([[output]] in
-- ip.toml), and what a succeeded job produced, the main output first,
-- as JSON lists.
ALTER TABLE versions ADD COLUMN output_params TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN outputs TEXT NOT NULL DEFAULT '[]';
