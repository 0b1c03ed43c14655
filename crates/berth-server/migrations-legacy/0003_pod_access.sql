-- Pods whose URLs need a token, and the scoped tokens that open one port of one pod.
ALTER TABLE containers ADD COLUMN authorized INTEGER NOT NULL DEFAULT 0;

CREATE TABLE pod_tokens (
    -- Public handle, for listing and revoking; the token itself is stored only as a hash.
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    container_id TEXT NOT NULL,
    port INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX pod_tokens_container ON pod_tokens (container_id);
