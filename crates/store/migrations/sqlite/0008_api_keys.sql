-- Several API keys per tenant, each revocable. A tenant's first key (the one
-- its creation returned) is carried over with the tenant's id as its id;
-- `tenants.api_key_hash` stays as that first key's hash, and only this table
-- says which keys work.
CREATE TABLE api_keys (
    id         BLOB PRIMARY KEY,
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    -- The start of the key, shown in lists to tell keys apart.
    prefix     TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);
INSERT INTO api_keys (id, tenant_id, prefix, hash, created_at)
    SELECT id, id, 'mlk_', api_key_hash, created_at FROM tenants;
