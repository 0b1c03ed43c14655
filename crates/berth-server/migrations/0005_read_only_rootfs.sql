-- A pod whose root filesystem is mounted read-only (its /tmp a tmpfs).
ALTER TABLE containers ADD COLUMN read_only_rootfs INTEGER NOT NULL DEFAULT 0;
