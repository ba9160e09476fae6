-- Who (key id; NULL: the admin key acting for the tenant), what (method and
-- route), on what (the object, numbers masked), when and from where, for
-- every write a tenant's request made.
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BLOB NOT NULL,
    key_id    BLOB,
    action    TEXT NOT NULL,
    object    TEXT NOT NULL,
    status    INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    source    TEXT
) STRICT;
CREATE INDEX audit_by_tenant ON audit (tenant_id, seq);
CREATE INDEX audit_by_time ON audit (at);
