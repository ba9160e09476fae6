-- Texts through X. Ids are 16-byte big-endian UUID v7s; times are Unix
-- milliseconds except ends_at (seconds, as bindings'); numbers are E.164
-- text. Like calls, no foreign keys and no CHECK lists: a text records what
-- happened, and statuses and reasons may grow without a rebuild.
CREATE TABLE messages (
    id             BLOB PRIMARY KEY,
    -- NULL when X is in no pool: kept, never listed.
    tenant_id      BLOB,
    binding_id     BLOB,
    direction      TEXT,
    x              TEXT NOT NULL,
    sender         TEXT NOT NULL,
    recipient      TEXT,
    body           TEXT NOT NULL,
    pickup_code    TEXT,
    status         TEXT NOT NULL,
    reason         TEXT,
    parts          INTEGER NOT NULL,
    ingress        TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- The binding's end (seconds), kept in step with it: texts go a
    -- cool-down after it.
    ends_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_by_tenant ON messages (tenant_id, id) WHERE tenant_id IS NOT NULL;
CREATE INDEX messages_by_binding ON messages (binding_id, id) WHERE binding_id IS NOT NULL;
CREATE INDEX messages_by_end ON messages (ends_at);

-- Relayed texts not yet handed to a carrier, and when each is due (the
-- accepting node sends it before then; see claim_due_relays). Apart from
-- messages, so that handing one over deletes a small row rather than
-- changing an indexed column of a wide one.
CREATE TABLE relays (
    message_id BLOB PRIMARY KEY,
    due        INTEGER NOT NULL
) STRICT;
CREATE INDEX relays_by_due ON relays (due);

-- Each part of a relayed text as an SMSC took it, for its receipt.
CREATE TABLE message_submits (
    link        TEXT NOT NULL,
    smsc_id     TEXT NOT NULL,
    message_id  BLOB NOT NULL,
    part        INTEGER NOT NULL,
    -- submitted, delivered, failed
    state       TEXT NOT NULL,
    PRIMARY KEY (link, smsc_id)
) STRICT;
CREATE INDEX message_submits_by_message ON message_submits (message_id);

-- Parts of concatenated texts until all have arrived.
CREATE TABLE message_parts (
    x           TEXT NOT NULL,
    sender      TEXT NOT NULL,
    reference   INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    coding      INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    ingress     TEXT NOT NULL,
    PRIMARY KEY (x, sender, reference, seq)
) STRICT;
CREATE INDEX message_parts_by_time ON message_parts (received_at);

CREATE TABLE sms_settings (
    tenant_id  BLOB PRIMARY KEY REFERENCES tenants (id),
    prefix     TEXT,
    filter     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE sms_rules (
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    position   INTEGER NOT NULL,
    pattern    TEXT NOT NULL,
    action     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, position)
) STRICT;

-- Where a text to a shared number goes: the sender's latest connected call.
CREATE INDEX calls_by_x_caller ON calls (x, caller, invited_at)
    WHERE binding_id IS NOT NULL AND direction IS NOT NULL;
