-- Each pod's runtime and egress policy, shown with the container. Older rows ran under the
-- server's one runtime, which was runc unless configured otherwise.
ALTER TABLE containers ADD COLUMN runtime TEXT NOT NULL DEFAULT 'runc';
ALTER TABLE containers ADD COLUMN block_network INTEGER NOT NULL DEFAULT 0;
-- Comma-separated CIDRs; empty for none.
ALTER TABLE containers ADD COLUMN allow_list TEXT NOT NULL DEFAULT '';
