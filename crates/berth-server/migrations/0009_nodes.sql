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

-- Tokens that let a worker join (`berth server join-token`): the secret's SHA-256, never
-- the secret, and when it stops working.
CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The client certificates signed at join, by SHA-256: a worker's requests on the node port
-- are its node's by the certificate they come with.
CREATE TABLE node_certs (
    cert_sha256 TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
