-- Console accounts (the console contract in PRODUCT.md). The email is the
-- sign-in name, kept lower-cased; the password only as its Argon2id hash
-- (a PHC string). A tenant's users carry its id, admins none. Failed
-- sign-ins count here, not in a node's memory, so that a lockout holds on
-- every node.
CREATE TABLE users (
    id             BLOB PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'owner', 'operator', 'viewer')),
    tenant_id      BLOB REFERENCES tenants (id),
    created_at     INTEGER NOT NULL,
    failed_signins INTEGER NOT NULL DEFAULT 0,
    locked_until   INTEGER,
    CHECK ((role = 'admin') = (tenant_id IS NULL))
) STRICT;
CREATE INDEX users_by_tenant ON users (tenant_id, id);
