-- Tenants' own recordings of prompts, replacing the built-in ones by name.
-- `samples` is the audio as it plays: 8 kHz mono PCM16, little-endian,
-- validated and decoded from the tenant's WAV before it is stored. Names are
-- not checked here (the engine knows them): a name a later build adds must
-- not need a rebuild of the table.
CREATE TABLE prompts (
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    name       TEXT NOT NULL,
    samples    BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT;
