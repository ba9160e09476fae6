-- Per-binding call prompts: `call_prompts` bits (1 pre_connect, 2
-- callee_whisper) and the warning before max_call_seconds.
ALTER TABLE bindings ADD COLUMN call_prompts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bindings ADD COLUMN warn_before_end_seconds INTEGER;
