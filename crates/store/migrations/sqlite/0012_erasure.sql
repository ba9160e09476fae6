-- Erasure (`DELETE /v1/parties/{number}`) finds a party's CDRs, texts and
-- the events about its records by index, so that it never scans a table
-- inside the writer's transaction. The columns hold blind tokens.
CREATE INDEX calls_by_caller ON calls (tenant_id, caller) WHERE caller IS NOT NULL;
CREATE INDEX calls_by_callee ON calls (tenant_id, callee) WHERE callee IS NOT NULL;
CREATE INDEX messages_by_sender ON messages (tenant_id, sender);
CREATE INDEX messages_by_recipient ON messages (tenant_id, recipient) WHERE recipient IS NOT NULL;
CREATE INDEX events_by_subject ON events (subject);
