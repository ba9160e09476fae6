-- Several API keys per tenant (see the SQLite migration of the same name).
CREATE TABLE api_keys (
    id         UUID PRIMARY KEY,
    tenant_id  UUID NOT NULL REFERENCES tenants (id),
    prefix     TEXT NOT NULL,
    hash       BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);
INSERT INTO api_keys (id, tenant_id, prefix, hash, created_at)
    SELECT id, id, 'mlk_', api_key_hash, created_at FROM tenants;
