-- MASKLINE_RETENTION_DAYS purges ended records by age (see the SQLite
-- migration of the same name); slots of bindings long gone go too.
CREATE INDEX calls_by_end ON calls (ended_at);
CREATE INDEX events_by_time ON events (created_at);
CREATE INDEX slots_by_end ON slots (live_until);
