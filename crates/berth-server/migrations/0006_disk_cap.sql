-- A pod's cap on what it may write to its root filesystem, in MiB (NULL: none).
ALTER TABLE containers ADD COLUMN disk_mib INTEGER;
