-- Maskline schema, PostgreSQL back end: the same tables as the embedded
-- store, plus what lets several nodes share them safely.
--
-- Ids are UUIDs; times are Unix seconds (CDRs and events: milliseconds);
-- numbers are E.164 digits as text (so ordering matches the embedded store).
--
-- Allocation invariants are enforced here, not only in each node's memory:
-- two nodes that allocate at the same instant from memories that have not
-- heard of each other's bindings yet cannot both commit (see
-- ARCHITECTURE.md). A binding holds its slots on X over
-- [created_at, live_until), live_until = ends_at + the cool-down; the
-- exclusion constraints below compare those ranges, so an ended binding
-- frees its slots exactly when memory would.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    api_key_hash BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL
);

-- A virtual number belongs to one tenant at a time. `seq` is pool order,
-- which first-fit allocation follows on every node.
CREATE TABLE numbers (
    number     TEXT PRIMARY KEY,
    tenant_id  UUID NOT NULL REFERENCES tenants (id),
    area       TEXT,
    created_at BIGINT NOT NULL,
    seq        BIGSERIAL NOT NULL
);
CREATE INDEX numbers_by_tenant ON numbers (tenant_id, number);

CREATE TABLE bindings (
    id               UUID PRIMARY KEY,
    tenant_id        UUID NOT NULL REFERENCES tenants (id),
    mode             TEXT NOT NULL CHECK (mode IN ('axb', 'axn', 'axe')),
    x                TEXT NOT NULL,
    extension        TEXT,
    a                TEXT NOT NULL,
    b                TEXT,
    area             TEXT,
    external_ref     TEXT,
    a_to_b           BOOLEAN NOT NULL,
    b_to_a           BOOLEAN NOT NULL,
    max_call_seconds BIGINT,
    record           BOOLEAN NOT NULL,
    sms              BOOLEAN NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    ended_at         BIGINT,
    end_reason       TEXT CHECK (end_reason IN ('unbound', 'expired')),
    -- min(expires_at, ended_at): status filters and start-up loading key on it.
    ends_at          BIGINT NOT NULL,
    -- ends_at + cool-down (never before created_at): the end of the range
    -- over which the binding holds its slots on X.
    live_until       BIGINT NOT NULL,
    CHECK ((mode = 'axe') = (extension IS NOT NULL)),
    CHECK (mode <> 'axb' OR b IS NOT NULL),
    CHECK (live_until >= created_at),
    -- All live bindings on one X share one mode.
    CONSTRAINT one_mode_per_number EXCLUDE USING gist
        (x WITH =, mode WITH <>, int8range(created_at, live_until) WITH &&),
    -- An axn binding holds its X alone (with the constraint above, nothing
    -- of another mode overlaps it either).
    CONSTRAINT axn_holds_number_alone EXCLUDE USING gist
        (x WITH =, int8range(created_at, live_until) WITH &&) WHERE (mode = 'axn'),
    -- An (X, extension) is one binding's.
    CONSTRAINT one_binding_per_extension EXCLUDE USING gist
        (x WITH =, extension WITH =, int8range(created_at, live_until) WITH &&)
        WHERE (extension IS NOT NULL)
);
CREATE INDEX bindings_by_tenant ON bindings (tenant_id, id);
CREATE INDEX bindings_by_ref ON bindings (tenant_id, external_ref, id) WHERE external_ref IS NOT NULL;
CREATE INDEX bindings_by_a ON bindings (tenant_id, a, id);
CREATE INDEX bindings_by_b ON bindings (tenant_id, b, id) WHERE b IS NOT NULL;
CREATE INDEX bindings_by_end ON bindings (ends_at);
-- What changed since a node lost its notifications (catch-up).
CREATE INDEX bindings_by_update ON bindings (updated_at);

-- The parties of axb and axe bindings, one row each, so that "a party is in
-- at most one live binding per X" can be a constraint (A of one binding
-- may be B of another). Kept by the triggers below, never written directly.
CREATE TABLE binding_parties (
    binding_id UUID NOT NULL REFERENCES bindings (id) ON DELETE CASCADE,
    x          TEXT NOT NULL,
    party      TEXT NOT NULL,
    -- The binding's creation, or the PATCH that made this party its B.
    live_from  BIGINT NOT NULL,
    live_until BIGINT NOT NULL,
    PRIMARY KEY (binding_id, party),
    CONSTRAINT one_binding_per_party_per_number EXCLUDE USING gist
        (x WITH =, party WITH =, int8range(live_from, GREATEST(live_from, live_until)) WITH &&)
);

CREATE FUNCTION binding_parties_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO binding_parties (binding_id, x, party, live_from, live_until)
    SELECT id, x, a, created_at, live_until FROM new_bindings WHERE mode <> 'axn'
    UNION ALL
    SELECT id, x, b, created_at, live_until FROM new_bindings
        WHERE mode <> 'axn' AND b IS NOT NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER bindings_parties_on_insert AFTER INSERT ON bindings
    REFERENCING NEW TABLE AS new_bindings
    FOR EACH STATEMENT EXECUTE FUNCTION binding_parties_insert();

CREATE FUNCTION binding_parties_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.mode = 'axn' THEN
        RETURN NULL;
    END IF;
    IF NEW.b IS DISTINCT FROM OLD.b THEN
        DELETE FROM binding_parties WHERE binding_id = OLD.id AND party = OLD.b;
        IF NEW.b IS NOT NULL THEN
            INSERT INTO binding_parties (binding_id, x, party, live_from, live_until)
            VALUES (NEW.id, NEW.x, NEW.b, GREATEST(NEW.created_at, NEW.updated_at), NEW.live_until);
        END IF;
    END IF;
    UPDATE binding_parties SET live_until = NEW.live_until
        WHERE binding_id = NEW.id AND live_until <> NEW.live_until;
    RETURN NULL;
END $$;

CREATE TRIGGER bindings_parties_on_update AFTER UPDATE OF b, live_until ON bindings
    FOR EACH ROW EXECUTE FUNCTION binding_parties_update();

-- The first response to each Idempotency-Key, replayed for repeats.
CREATE TABLE idempotency (
    tenant_id    UUID NOT NULL,
    key          TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);

-- Call detail records (see the embedded schema for why no foreign keys).
CREATE TABLE calls (
    id             UUID PRIMARY KEY,
    tenant_id      UUID,
    binding_id     UUID,
    direction      TEXT,
    x              TEXT,
    caller         TEXT,
    callee         TEXT,
    invited_at     BIGINT NOT NULL,
    ringing_at     BIGINT,
    answered_at    BIGINT,
    ended_at       BIGINT NOT NULL,
    final_status   INTEGER NOT NULL,
    released_by    TEXT NOT NULL,
    release_reason TEXT NOT NULL,
    refusal        TEXT
);
CREATE INDEX calls_by_tenant ON calls (tenant_id, id) WHERE tenant_id IS NOT NULL;
CREATE INDEX calls_by_binding ON calls (tenant_id, binding_id, id) WHERE binding_id IS NOT NULL;
CREATE INDEX calls_by_time ON calls (tenant_id, invited_at) WHERE tenant_id IS NOT NULL;

CREATE TABLE webhooks (
    tenant_id            UUID PRIMARY KEY REFERENCES tenants (id),
    url                  TEXT NOT NULL,
    events               TEXT NOT NULL,
    secret               TEXT NOT NULL,
    intercept_url        TEXT,
    intercept_fallback   TEXT CHECK (intercept_fallback IN ('allow', 'deny')),
    intercept_timeout_ms INTEGER,
    updated_at           BIGINT NOT NULL
);

-- The outbox. `seq` is commit order, not just insert order: every
-- transaction that inserts events takes the `events` advisory lock first
-- and holds it to its commit, so a poller that has read up to seq N never
-- sees a smaller seq commit later (PgStore::apply_batch).
CREATE TABLE events (
    seq             BIGSERIAL PRIMARY KEY,
    id              UUID NOT NULL UNIQUE,
    tenant_id       UUID NOT NULL,
    type            TEXT NOT NULL,
    subject         UUID NOT NULL,
    created_at      BIGINT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Also the claim: a sender that takes an event moves it to the end of
    -- its lease, so that no other node takes it meanwhile and, if the
    -- sender dies, the event is due again when the lease ends.
    next_attempt_at BIGINT,
    retry_from      BIGINT NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    BIGINT
);
CREATE INDEX events_by_tenant ON events (tenant_id, seq);
CREATE INDEX events_due ON events (tenant_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX events_pending_by_subject ON events (subject, seq) WHERE state = 'pending';
