-- A tenant's call caps (PUT /v1/settings/calls): calls in progress and
-- calls started per second over every node; NULL is no cap.
ALTER TABLE call_rules ADD COLUMN max_concurrent_calls INTEGER;
ALTER TABLE call_rules ADD COLUMN max_calls_per_second INTEGER;

-- Each node's last report of its tenants' calls, which the other nodes
-- count against those caps. A node replaces all of its rows at each
-- report; rows older than a few seconds are ignored (a node that stopped).
CREATE TABLE call_load (
    node       TEXT NOT NULL,
    tenant_id  BLOB NOT NULL,
    active     INTEGER NOT NULL,
    per_second INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (node, tenant_id)
) STRICT;
