-- A tenant's call caps (PUT /v1/settings/calls): calls in progress and
-- calls started per second over every node; NULL is no cap.
ALTER TABLE call_rules ADD COLUMN max_concurrent_calls BIGINT;
ALTER TABLE call_rules ADD COLUMN max_calls_per_second BIGINT;

-- Each node's last report of its tenants' calls, which the other nodes
-- count against those caps. A node replaces all of its rows at each
-- report; rows older than a few seconds are ignored (a node that stopped).
CREATE TABLE call_load (
    node       TEXT NOT NULL,
    tenant_id  UUID NOT NULL,
    active     BIGINT NOT NULL,
    per_second BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (node, tenant_id)
);
