-- Events and their webhook delivery: the durable outbox. An event row is
-- written in the same transaction as the change that caused it.
CREATE TABLE webhooks (
    tenant_id            BLOB PRIMARY KEY REFERENCES tenants (id),
    url                  TEXT NOT NULL,
    -- Space-separated subscription patterns; empty = every type.
    events               TEXT NOT NULL,
    -- Kept in clear: HMAC needs it (encryption at rest is a later issue).
    secret               TEXT NOT NULL,
    intercept_url        TEXT,
    intercept_fallback   TEXT CHECK (intercept_fallback IN ('allow', 'deny')),
    intercept_timeout_ms INTEGER,
    updated_at           INTEGER NOT NULL
) STRICT;

CREATE TABLE events (
    -- Apply order (the writer is the only one): the order `GET /v1/events`
    -- lists in and deliveries of one subject follow. AUTOINCREMENT so a
    -- purge can never make a cursor point at a later event.
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              BLOB NOT NULL UNIQUE,
    tenant_id       BLOB NOT NULL,
    type            TEXT NOT NULL,
    -- The binding (or, for a call with none, the call) it is about.
    subject         BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    -- The JSON document POSTed, byte for byte (the signature covers it).
    body            TEXT NOT NULL,
    -- none (no webhook wanted it), pending, delivered, failed.
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    -- Retries stop this long after it: created_at, or a redelivery's time.
    retry_from      INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER
) STRICT;
CREATE INDEX events_by_tenant ON events (tenant_id, seq);
CREATE INDEX events_due ON events (tenant_id, next_attempt_at) WHERE state = 'pending';
-- "Is an earlier event of this subject still pending?", per candidate.
CREATE INDEX events_pending_by_subject ON events (subject, seq) WHERE state = 'pending';
