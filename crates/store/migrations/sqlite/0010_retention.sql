-- MASKLINE_RETENTION_DAYS purges ended records by age, a bounded batch at a
-- time: each table it purges is read in the order of that age.
CREATE INDEX calls_by_end ON calls (ended_at);
CREATE INDEX events_by_time ON events (created_at);
