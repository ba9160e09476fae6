-- The binding a stored response created: erasing a party (DELETE
-- /v1/parties/{number}) deletes the responses of its erased bindings too,
-- which hold its numbers (sealed) until they expire. NULL for responses
-- stored before this column (they expire within a day).
ALTER TABLE idempotency ADD COLUMN binding_id BLOB;
CREATE INDEX idempotency_by_binding ON idempotency (binding_id) WHERE binding_id IS NOT NULL;
