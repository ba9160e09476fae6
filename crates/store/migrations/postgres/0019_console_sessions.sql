-- Console sessions (the console contract: a cookie that ends after 12 h or
-- on sign-out, valid on every node). Only the SHA-256 of the cookie's token
-- is kept: a copy of this table signs nobody in.
CREATE TABLE console_sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_user ON console_sessions (user_id, expires_at);
