-- Texts through X (see the SQLite migration of the same name for the
-- columns). Times are Unix milliseconds except ends_at (seconds).
CREATE TABLE messages (
    id          UUID PRIMARY KEY,
    tenant_id   UUID,
    binding_id  UUID,
    direction   TEXT,
    x           TEXT NOT NULL,
    sender      TEXT NOT NULL,
    recipient   TEXT,
    body        TEXT NOT NULL,
    pickup_code TEXT,
    status      TEXT NOT NULL,
    reason      TEXT,
    parts       INTEGER NOT NULL,
    ingress     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    ends_at     BIGINT NOT NULL
) WITH (fillfactor = 90); -- room for a status change on the same page (HOT)
CREATE INDEX messages_by_tenant ON messages (tenant_id, id) WHERE tenant_id IS NOT NULL;
CREATE INDEX messages_by_binding ON messages (binding_id, id) WHERE binding_id IS NOT NULL;
CREATE INDEX messages_by_end ON messages (ends_at);

-- Relayed texts not yet handed to a carrier, and when each is due (the
-- accepting node sends it before then; see claim_due_relays). Apart from
-- messages, so that handing one over deletes a small row rather than
-- changing an indexed column of a wide one.
CREATE TABLE relays (
    message_id UUID PRIMARY KEY,
    due        BIGINT NOT NULL
);
CREATE INDEX relays_by_due ON relays (due);

CREATE TABLE message_submits (
    link       TEXT NOT NULL,
    smsc_id    TEXT NOT NULL,
    message_id UUID NOT NULL,
    part       INTEGER NOT NULL,
    state      TEXT NOT NULL,
    PRIMARY KEY (link, smsc_id)
);
CREATE INDEX message_submits_by_message ON message_submits (message_id);

CREATE TABLE message_parts (
    x           TEXT NOT NULL,
    sender      TEXT NOT NULL,
    reference   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    coding      INTEGER NOT NULL,
    bytes       BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    ingress     TEXT NOT NULL,
    PRIMARY KEY (x, sender, reference, seq)
);
CREATE INDEX message_parts_by_time ON message_parts (received_at);

CREATE TABLE sms_settings (
    tenant_id  UUID PRIMARY KEY REFERENCES tenants (id),
    prefix     TEXT,
    filter     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE sms_rules (
    tenant_id UUID NOT NULL REFERENCES tenants (id),
    position  INTEGER NOT NULL,
    pattern   TEXT NOT NULL,
    action    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, position)
);

CREATE INDEX calls_by_x_caller ON calls (x, caller, invited_at)
    WHERE binding_id IS NOT NULL AND direction IS NOT NULL;
