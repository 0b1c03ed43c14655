-- Portable SQL: the same migrations run on SQLite (one machine) and PostgreSQL (a control
-- plane with workers). Times are unix seconds or milliseconds in BIGINT; flags are 0/1
-- integers, which both read alike.

-- API tokens, stored as sha256 of the token text.
CREATE TABLE tokens (
    token_sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A stub is a validated pod spec, identified by its content hash.
CREATE TABLE stubs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE containers (
    id TEXT PRIMARY KEY,
    stub_id TEXT NOT NULL REFERENCES stubs(id),
    deployment_id TEXT,
    status TEXT NOT NULL,
    image TEXT NOT NULL,
    ports TEXT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_mib BIGINT NOT NULL,
    keep_warm_seconds BIGINT NOT NULL,
    exit_code INTEGER,
    reason TEXT,
    ipv4 TEXT,
    ipv6 TEXT,
    scheduled_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);

CREATE INDEX containers_by_status ON containers(status);
