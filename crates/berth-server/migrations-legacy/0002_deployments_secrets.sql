-- Secrets, encrypted with the key in the state directory (XChaCha20-Poly1305, the name as
-- associated data so a ciphertext cannot be moved to another name).
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- A deployment: a name whose URL outlives its versions.
CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    active_version INTEGER,
    created_at INTEGER NOT NULL
);

-- Each deploy makes a version: a stub (the pod spec) and the state of its roll-out.
CREATE TABLE deployment_versions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    stub_id TEXT NOT NULL REFERENCES stubs(id),
    status TEXT NOT NULL,
    reason TEXT,
    container_id TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (name, version)
);

CREATE INDEX containers_by_deployment ON containers(deployment_id);
