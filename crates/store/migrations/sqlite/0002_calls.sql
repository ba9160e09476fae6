-- Call detail records: one per inbound INVITE, whatever its outcome. Ids are
-- 16-byte big-endian UUID v7s (so id order is arrival order); times are Unix
-- *milliseconds*; numbers are E.164 text, as in bindings.
--
-- No foreign keys and no CHECK lists, unlike bindings: a CDR records what
-- happened and is never refused for naming an unknown tenant or binding, and
-- release reasons and refusals will grow without a table rebuild. The reader
-- rejects a name it does not know as corrupt.
CREATE TABLE calls (
    id             BLOB PRIMARY KEY,
    -- NULL when X is in no pool: such calls are kept but never listed.
    tenant_id      BLOB,
    binding_id     BLOB,
    direction      TEXT,
    x              TEXT,
    caller         TEXT,
    callee         TEXT,
    invited_at     INTEGER NOT NULL,
    ringing_at     INTEGER,
    answered_at    INTEGER,
    ended_at       INTEGER NOT NULL,
    final_status   INTEGER NOT NULL,
    released_by    TEXT NOT NULL,
    release_reason TEXT NOT NULL,
    refusal        TEXT
) STRICT;
-- Partial: calls to numbers in no pool (scanners) are never listed.
CREATE INDEX calls_by_tenant ON calls (tenant_id, id) WHERE tenant_id IS NOT NULL;
CREATE INDEX calls_by_binding ON calls (tenant_id, binding_id, id) WHERE binding_id IS NOT NULL;
-- `since` reads by time (SqliteStore::calls says why); ids only approximate
-- invited_at, so the filter cannot use the id indexes alone.
CREATE INDEX calls_by_time ON calls (tenant_id, invited_at) WHERE tenant_id IS NOT NULL;
