-- Encryption at rest (src/seal.rs). A party number's old column now holds
-- its blind token (lookups, uniqueness) and the number itself is sealed in
-- `<column>_sealed`; a row with `_sealed` NULL was written in clear before
-- this migration and is sealed by the store at start-up. Texts, event
-- bodies, stored responses and webhook secrets are sealed in place.
ALTER TABLE bindings ADD COLUMN a_sealed TEXT;
ALTER TABLE bindings ADD COLUMN b_sealed TEXT;
ALTER TABLE calls ADD COLUMN caller_sealed TEXT;
ALTER TABLE calls ADD COLUMN callee_sealed TEXT;
ALTER TABLE messages ADD COLUMN sender_sealed TEXT;
ALTER TABLE messages ADD COLUMN recipient_sealed TEXT;
ALTER TABLE message_parts ADD COLUMN sender_sealed TEXT;
-- The part's bytes, sealed; `bytes` is then empty.
ALTER TABLE message_parts ADD COLUMN bytes_sealed TEXT;
