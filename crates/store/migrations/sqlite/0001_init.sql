-- Maskline schema, embedded SQLite back end.
-- Ids are 16-byte big-endian UUIDs (so BLOB order is id order); times are
-- Unix seconds; numbers are E.164 text.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE tenants (
    id           BLOB PRIMARY KEY,
    name         TEXT NOT NULL,
    api_key_hash BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
) STRICT;

-- A virtual number belongs to one tenant at a time.
CREATE TABLE numbers (
    number     TEXT PRIMARY KEY,
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    area       TEXT,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX numbers_by_tenant ON numbers (tenant_id, number);

CREATE TABLE bindings (
    id               BLOB PRIMARY KEY,
    tenant_id        BLOB NOT NULL REFERENCES tenants (id),
    mode             TEXT NOT NULL CHECK (mode IN ('axb', 'axn', 'axe')),
    x                TEXT NOT NULL,
    extension        TEXT,
    a                TEXT NOT NULL,
    b                TEXT,
    area             TEXT,
    external_ref     TEXT,
    a_to_b           INTEGER NOT NULL,
    b_to_a           INTEGER NOT NULL,
    max_call_seconds INTEGER,
    record           INTEGER NOT NULL,
    sms              INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    ended_at         INTEGER,
    end_reason       TEXT CHECK (end_reason IN ('unbound', 'expired')),
    -- min(expires_at, ended_at): status filters and start-up loading key on it.
    ends_at          INTEGER NOT NULL
) STRICT;
CREATE INDEX bindings_by_tenant ON bindings (tenant_id, id);
CREATE INDEX bindings_by_ref ON bindings (tenant_id, external_ref, id) WHERE external_ref IS NOT NULL;
CREATE INDEX bindings_by_a ON bindings (tenant_id, a, id);
CREATE INDEX bindings_by_b ON bindings (tenant_id, b, id) WHERE b IS NOT NULL;
CREATE INDEX bindings_by_end ON bindings (ends_at);

-- The first response to each Idempotency-Key, replayed for repeats.
CREATE TABLE idempotency (
    tenant_id    BLOB NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
) STRICT;
CREATE INDEX idempotency_by_age ON idempotency (created_at);
