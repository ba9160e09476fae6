-- The open-call journal: a connected call's CDR so far, kept until its
-- real CDR replaces it. A node that stopped without ending its calls finds
-- them here when it starts again and writes their CDRs (`node_restart`).
-- Same columns as `calls` (read by the same code), and the node's name.
CREATE TABLE open_calls (
    id             BLOB PRIMARY KEY,
    node           TEXT NOT NULL,
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
    refusal        TEXT,
    caller_sealed  TEXT,
    callee_sealed  TEXT
) STRICT;
CREATE INDEX open_calls_by_node ON open_calls (node);
