-- The binding a stored response created: erasing a party (DELETE
-- /v1/parties/{number}) deletes the responses of its erased bindings too,
-- which hold its numbers (sealed) until they expire. NULL for responses
-- stored before this column (they expire within a day).
ALTER TABLE idempotency ADD COLUMN binding_id UUID;
CREATE INDEX idempotency_by_binding ON idempotency (binding_id) WHERE binding_id IS NOT NULL;

-- create_bindings (0011) with each stored response's binding.
DROP FUNCTION create_bindings;
CREATE FUNCTION create_bindings(
    b_id uuid[], b_tenant uuid[], b_mode text[], b_x text[], b_extension text[],
    b_a text[], b_b text[], b_area text[], b_external_ref text[], b_a_to_b bool[],
    b_b_to_a bool[], b_max_call int8[], b_record bool[], b_sms bool[], b_created int8[],
    b_updated int8[], b_expires int8[], b_ended int8[], b_end_reason text[], b_ends int8[],
    b_live_until int8[], b_call_prompts int4[], b_warn int4[], b_a_sealed text[],
    b_b_sealed text[],
    k_tenant uuid[], k_key text[], k_hash bytea[], k_status int4[], k_body text[],
    k_created int8[], k_binding uuid[],
    e_id uuid[], e_tenant uuid[], e_type text[], e_subject uuid[], e_created int8[],
    e_body text[], e_state text[], e_next int8[],
    events_lock int8, channel text, payloads text[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bindings (id, tenant_id, mode, x, extension, a, b, area, external_ref,
                          a_to_b, b_to_a, max_call_seconds, record, sms, created_at,
                          updated_at, expires_at, ended_at, end_reason, ends_at, live_until,
                          call_prompts, warn_before_end_seconds, a_sealed, b_sealed)
    SELECT * FROM unnest(b_id, b_tenant, b_mode, b_x, b_extension, b_a, b_b, b_area,
                         b_external_ref, b_a_to_b, b_b_to_a, b_max_call, b_record, b_sms,
                         b_created, b_updated, b_expires, b_ended, b_end_reason, b_ends,
                         b_live_until, b_call_prompts, b_warn, b_a_sealed, b_b_sealed);
    IF cardinality(k_key) > 0 THEN
        INSERT INTO idempotency (tenant_id, key, request_hash, status, body, created_at,
                                 binding_id)
        SELECT * FROM unnest(k_tenant, k_key, k_hash, k_status, k_body, k_created, k_binding);
    END IF;
    IF cardinality(e_id) > 0 THEN
        PERFORM pg_advisory_xact_lock(events_lock);
        INSERT INTO events (id, tenant_id, type, subject, created_at, body, state,
                            next_attempt_at, retry_from)
        SELECT id, t, k, s, c, body, st, nx, c
        FROM unnest(e_id, e_tenant, e_type, e_subject, e_created, e_body, e_state, e_next)
            WITH ORDINALITY AS u(id, t, k, s, c, body, st, nx, i)
        ORDER BY i;
    END IF;
    PERFORM pg_notify(channel, p) FROM unnest(payloads) WITH ORDINALITY AS u(p, i) ORDER BY i;
END $$;
