-- Tenants' own recordings of prompts (see the SQLite migration of the same
-- name): 8 kHz mono PCM16 little-endian, validated before it is stored.
CREATE TABLE prompts (
    tenant_id  UUID NOT NULL REFERENCES tenants (id),
    name       TEXT NOT NULL,
    samples    BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
