-- Console sessions (the console contract: a cookie that ends after 12 h or
-- on sign-out, valid on every node). Only the SHA-256 of the cookie's token
-- is kept: a copy of this table signs nobody in.
CREATE TABLE console_sessions (
    token_hash BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sessions_by_user ON console_sessions (user_id, expires_at);
