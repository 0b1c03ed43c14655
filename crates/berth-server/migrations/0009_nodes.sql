-- The machines that run pods: what each offers and when it last said it was alive. Every
-- container is placed on one; containers from before nodes are placed on the machine that
-- ran them when it first starts (NULL until then).
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    runtimes TEXT NOT NULL,
    labels TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

ALTER TABLE containers ADD COLUMN node_id TEXT;
CREATE INDEX containers_by_node ON containers(node_id);
