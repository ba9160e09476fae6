-- The audit log (see the SQLite migration of the same name).
CREATE TABLE audit (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id UUID NOT NULL,
    key_id    UUID,
    action    TEXT NOT NULL,
    object    TEXT NOT NULL,
    status    INTEGER NOT NULL,
    at        BIGINT NOT NULL,
    source    TEXT
);
CREATE INDEX audit_by_tenant ON audit (tenant_id, seq);
CREATE INDEX audit_by_time ON audit (at);
