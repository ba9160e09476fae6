-- A tenant's call rules against toll fraud (PUT /v1/settings/calls): the
-- prefixes its parties must start with, and those they must not, each list
-- space-separated. A tenant without a row has the defaults (its region's
-- country code; premium-rate and satellite ranges denied).
CREATE TABLE call_rules (
    tenant_id      BLOB PRIMARY KEY REFERENCES tenants (id),
    allow_prefixes TEXT NOT NULL,
    deny_prefixes  TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
