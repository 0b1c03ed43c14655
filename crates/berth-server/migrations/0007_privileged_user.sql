-- A pod that asked to run without a user namespace (its root is the host's root).
ALTER TABLE containers ADD COLUMN privileged_user INTEGER NOT NULL DEFAULT 0;
