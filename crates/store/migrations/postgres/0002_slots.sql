-- Allocation invariants on btree keys instead of GiST exclusion constraints.
--
-- The exclusion constraints of 0001 cost about 210 µs of PostgreSQL CPU per
-- binding (BENCHMARKS.md §6), most of a bind. The same invariants are kept
-- here by rows that a binding holds over [created_at, live_until):
--
-- * `slots`: one row per (X, party) and per (X, extension) of axb and axe
--   bindings, under a unique key. A new binding takes a slot over only when
--   its last holder's range ended before the new one starts, in one
--   INSERT … ON CONFLICT DO UPDATE … WHERE, which PostgreSQL serialises on
--   the key. Holders of one slot therefore follow each other without
--   overlap.
-- * `number_holds`: one row per X saying which mode holds it and until
--   when at least. Bindings of the mode it names share the row (FOR SHARE);
--   anything else must lock it exclusively and check the bindings on X
--   themselves, because `live_until` here is an upper bound (it is not
--   lowered when a binding ends early, and it is raised with slack so that
--   a stream of bindings on one X does not rewrite the row each time).
--
-- Violations are raised with the constraint names of 0001 and SQLSTATE
-- 23P01 (exclusion_violation), so callers see the same refusals.

ALTER TABLE bindings
    DROP CONSTRAINT one_mode_per_number,
    DROP CONSTRAINT axn_holds_number_alone,
    DROP CONSTRAINT one_binding_per_extension;
DROP TRIGGER bindings_parties_on_insert ON bindings;
DROP TRIGGER bindings_parties_on_update ON bindings;
DROP TABLE binding_parties;
DROP FUNCTION binding_parties_insert();
DROP FUNCTION binding_parties_update();

-- What holds an X from a given time on (the check behind number_holds, and
-- bindings_on).
CREATE INDEX bindings_by_x ON bindings (x, live_until);

CREATE TABLE number_holds (
    x          TEXT PRIMARY KEY,
    mode       TEXT NOT NULL CHECK (mode IN ('axb', 'axn', 'axe')),
    -- No live binding on x of `mode` lives past this; none of another mode
    -- lives at all (their ranges ended before the row last changed mode).
    live_until BIGINT NOT NULL
);

CREATE TABLE slots (
    x          TEXT NOT NULL,
    -- A party's number (E.164, '+…'), or '#' and an extension.
    key        TEXT NOT NULL,
    binding_id UUID NOT NULL,
    live_from  BIGINT NOT NULL,
    live_until BIGINT NOT NULL,
    PRIMARY KEY (x, key)
);

-- Today's holders (earlier ones are irrelevant: holders of a key never
-- overlapped, so the latest is the only one a new binding can meet).
INSERT INTO slots (x, key, binding_id, live_from, live_until)
SELECT DISTINCT ON (x, key) x, key, id, created_at, live_until
FROM (
    SELECT x, a AS key, id, created_at, live_until FROM bindings WHERE mode <> 'axn'
    UNION ALL
    SELECT x, b, id, created_at, live_until FROM bindings WHERE mode <> 'axn' AND b IS NOT NULL
    UNION ALL
    SELECT x, '#' || extension, id, created_at, live_until FROM bindings WHERE extension IS NOT NULL
) held
ORDER BY x, key, live_until DESC;

INSERT INTO number_holds (x, mode, live_until)
SELECT DISTINCT ON (x) x, mode, max(live_until)
FROM bindings
GROUP BY x, mode
ORDER BY x, max(live_until) DESC;

-- The bindings (xs, modes, ids, froms, untils) take their numbers' holds:
-- those of one mode share one, an axn binding needs it alone. Conservative
-- per batch (one range from the earliest start to the latest end per X;
-- two modes or two axn bindings on one X are refused): the writer retries a
-- refused batch one binding at a time, where the check is exact.
CREATE FUNCTION hold_numbers(xs text[], modes text[], ids uuid[], froms bigint[], untils bigint[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    shared text[];
    c record;
    h record;
    other text;
BEGIN
    -- Shared, in one statement: holds that already name the mode and last
    -- long enough. (A hold changed meanwhile is re-checked after the lock
    -- wait and, if no longer right, left to the loop below.)
    SELECT coalesce(array_agg(s.x), '{}') INTO shared FROM (
        SELECT n.x FROM number_holds n
        JOIN (SELECT w.x, min(w.m) AS m1, max(w.m) AS m2, max(w.u) AS u
              FROM unnest(xs, modes, untils) AS w(x, m, u) GROUP BY w.x) want ON want.x = n.x
        WHERE want.m1 = want.m2 AND want.m1 <> 'axn'
          AND n.mode = want.m1 AND n.live_until >= want.u
        ORDER BY n.x
        FOR SHARE OF n
    ) s;
    -- Exclusive, number by number in order: take, extend or switch.
    FOR c IN
        SELECT w.x, min(w.m) AS mode, count(DISTINCT w.m) AS modes,
               count(*) FILTER (WHERE w.m = 'axn') AS axn,
               min(w.f) AS live_from, max(w.u) AS live_until, array_agg(w.id) AS ids
        FROM unnest(xs, modes, ids, froms, untils) AS w(x, m, id, f, u)
        WHERE w.x <> ALL (shared)
        GROUP BY w.x
        ORDER BY w.x
    LOOP
        IF c.modes > 1 THEN
            RAISE EXCEPTION 'two modes on one number in one batch'
                USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'one_mode_per_number';
        END IF;
        IF c.axn > 1 THEN
            RAISE EXCEPTION 'two axn bindings on one number in one batch'
                USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'axn_holds_number_alone';
        END IF;
        INSERT INTO number_holds (x, mode, live_until) VALUES (c.x, c.mode, 0)
            ON CONFLICT (x) DO NOTHING;
        SELECT n.mode, n.live_until INTO h FROM number_holds n WHERE n.x = c.x FOR UPDATE;
        IF h.live_until > c.live_from AND (h.mode <> c.mode OR c.mode = 'axn') THEN
            -- The hold may be stale (bindings that ended early): what
            -- really overlaps these bindings on X?
            SELECT b.mode INTO other FROM bindings b
            WHERE b.x = c.x AND b.live_until > c.live_from AND b.created_at < c.live_until
              AND b.live_until > b.created_at AND b.id <> ALL (c.ids)
            LIMIT 1;
            IF FOUND THEN
                IF other = 'axn' AND c.mode = 'axn' THEN
                    RAISE EXCEPTION 'number % is held by an axn binding', c.x
                        USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'axn_holds_number_alone';
                END IF;
                RAISE EXCEPTION 'number % is held in another mode', c.x
                    USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'one_mode_per_number';
            END IF;
            h.live_until := 0;
        END IF;
        -- Slack (an hour past the latest end) lets the next bindings of
        -- this mode share the row instead of rewriting it.
        UPDATE number_holds
        SET mode = c.mode,
            live_until = GREATEST(CASE WHEN h.mode = c.mode THEN h.live_until ELSE 0 END,
                                  c.live_until + CASE WHEN c.mode = 'axn' THEN 0 ELSE 3600 END)
        WHERE x = c.x;
    END LOOP;
END $$;

-- Takes the slots (x, key) for the bindings `ids` over [froms, untils):
-- from holders whose range ended before each starts, or, for a binding
-- that already holds one (a later end), by moving its end.
CREATE FUNCTION take_slots(xs text[], keys text[], ids uuid[], froms bigint[], untils bigint[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint := cardinality(keys);
    taken bigint;
    refused text;
BEGIN
    -- One statement cannot take a key twice; the writer's retry one by one
    -- decides between two claims in one batch.
    SELECT w.k INTO refused FROM unnest(xs, keys) AS w(x, k)
        GROUP BY w.x, w.k HAVING count(*) > 1 LIMIT 1;
    IF NOT FOUND THEN
        WITH took AS (
            INSERT INTO slots AS s (x, key, binding_id, live_from, live_until)
            SELECT * FROM unnest(xs, keys, ids, froms, untils)
            ON CONFLICT (x, key) DO UPDATE
                SET binding_id = EXCLUDED.binding_id,
                    live_from = CASE WHEN s.binding_id = EXCLUDED.binding_id
                                     THEN s.live_from ELSE EXCLUDED.live_from END,
                    live_until = EXCLUDED.live_until
                WHERE s.binding_id = EXCLUDED.binding_id OR s.live_until <= EXCLUDED.live_from
            RETURNING 1
        )
        SELECT count(*) INTO taken FROM took;
        IF taken = wanted THEN
            RETURN;
        END IF;
        SELECT w.k INTO refused
        FROM unnest(xs, keys, ids) AS w(x, k, id) JOIN slots s ON s.x = w.x AND s.key = w.k
        WHERE s.binding_id <> w.id
        LIMIT 1;
    END IF;
    IF refused LIKE '#%' THEN
        RAISE EXCEPTION 'extension taken on its number'
            USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'one_binding_per_extension';
    END IF;
    RAISE EXCEPTION 'party already bound on this number'
        USING ERRCODE = 'exclusion_violation', CONSTRAINT = 'one_binding_per_party_per_number';
END $$;

CREATE FUNCTION bindings_hold_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    xs text[];
    modes text[];
    keys text[];
    ids uuid[];
    froms bigint[];
    untils bigint[];
BEGIN
    -- A binding whose range is empty (ended as it began) holds nothing.
    SELECT array_agg(x), array_agg(mode), array_agg(id), array_agg(created_at),
           array_agg(live_until)
    INTO xs, modes, ids, froms, untils
    FROM new_bindings WHERE live_until > created_at;
    IF xs IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM hold_numbers(xs, modes, ids, froms, untils);
    SELECT array_agg(w.x), array_agg(w.k), array_agg(w.id), array_agg(w.f), array_agg(w.u)
    INTO xs, keys, ids, froms, untils
    FROM (
        SELECT x, a AS k, id, created_at AS f, live_until AS u FROM new_bindings WHERE mode <> 'axn'
        UNION ALL
        SELECT x, b, id, created_at, live_until FROM new_bindings WHERE mode <> 'axn' AND b IS NOT NULL
        UNION ALL
        SELECT x, '#' || extension, id, created_at, live_until FROM new_bindings
            WHERE extension IS NOT NULL
    ) w
    WHERE w.u > w.f;
    IF xs IS NOT NULL THEN
        PERFORM take_slots(xs, keys, ids, froms, untils);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER bindings_hold_on_insert AFTER INSERT ON bindings
    REFERENCING NEW TABLE AS new_bindings
    FOR EACH STATEMENT EXECUTE FUNCTION bindings_hold_on_insert();

-- A changed B moves its slot (the old B is free at once, the new one is
-- held from the change on); a later end extends every slot and the
-- number's hold, an earlier one shortens the slots.
CREATE FUNCTION bindings_hold_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed bigint := GREATEST(NEW.created_at, NEW.updated_at);
    keys text[];
BEGIN
    IF NEW.live_until > OLD.live_until AND NEW.live_until > NEW.created_at THEN
        PERFORM hold_numbers(ARRAY[NEW.x::text], ARRAY[NEW.mode::text], ARRAY[NEW.id],
                             ARRAY[NEW.created_at], ARRAY[NEW.live_until]);
    END IF;
    IF NEW.mode = 'axn' THEN
        RETURN NULL;
    END IF;
    IF NEW.b IS DISTINCT FROM OLD.b THEN
        DELETE FROM slots WHERE x = OLD.x AND key = OLD.b AND binding_id = OLD.id;
        IF NEW.b IS NOT NULL AND NEW.live_until > changed THEN
            PERFORM take_slots(ARRAY[NEW.x], ARRAY[NEW.b::text], ARRAY[NEW.id],
                               ARRAY[changed], ARRAY[NEW.live_until]);
        END IF;
    END IF;
    IF NEW.live_until > OLD.live_until AND NEW.live_until > NEW.created_at THEN
        keys := ARRAY[NEW.a::text];
        IF NEW.b IS NOT NULL AND NEW.b IS NOT DISTINCT FROM OLD.b THEN
            keys := keys || NEW.b::text;
        END IF;
        IF NEW.extension IS NOT NULL THEN
            keys := keys || ('#' || NEW.extension);
        END IF;
        PERFORM take_slots(array_fill(NEW.x::text, ARRAY[cardinality(keys)]), keys,
                           array_fill(NEW.id, ARRAY[cardinality(keys)]),
                           array_fill(NEW.created_at, ARRAY[cardinality(keys)]),
                           array_fill(NEW.live_until, ARRAY[cardinality(keys)]));
    ELSIF NEW.live_until < OLD.live_until THEN
        UPDATE slots SET live_until = GREATEST(live_from, NEW.live_until)
        WHERE x = NEW.x AND key IN (NEW.a, NEW.b, '#' || NEW.extension)
          AND binding_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER bindings_hold_on_update AFTER UPDATE OF b, live_until ON bindings
    FOR EACH ROW EXECUTE FUNCTION bindings_hold_on_update();
