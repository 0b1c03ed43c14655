-- API tokens, stored as sha256 of the token text.
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- A stub is a validated pod spec, identified by its content hash.
CREATE TABLE stubs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE containers (
    id TEXT PRIMARY KEY,
    stub_id TEXT NOT NULL REFERENCES stubs(id),
    deployment_id TEXT,
    status TEXT NOT NULL,
    image TEXT NOT NULL,
    ports TEXT NOT NULL,
    cpu_millis INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    keep_warm_seconds INTEGER NOT NULL,
    exit_code INTEGER,
    reason TEXT,
    ipv4 TEXT,
    ipv6 TEXT,
    scheduled_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);

CREATE INDEX containers_by_status ON containers(status);
