-- Receipts for carrier ids not (yet) known: an SMSC may send the receipt
-- before the handover of its text is recorded (or to another node). Kept
-- until the handover shows up, or for an hour.
CREATE TABLE unmatched_receipts (
    link        TEXT NOT NULL,
    smsc_id     TEXT NOT NULL,
    delivered   BOOLEAN NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (link, smsc_id)
);
