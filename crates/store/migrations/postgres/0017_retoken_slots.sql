-- A rotation of the blind key (src/seal.rs) changes the token of a party
-- whose binding keeps it. The reseal that rewrites the tokens runs with the
-- transaction setting `maskline.retoken` on, and then a binding's slot moves
-- to its new token where, of two holders, the one whose range ends later
-- keeps it: holders of one key never overlap, so only the latest matters to
-- a new binding, and an older binding whose token changed after a newer one
-- took the new token must not fail its reseal. A real change of B (an
-- update) still takes its slot with take_slots' exact check.
CREATE FUNCTION retoken_slot(sx text, old_key text, new_key text, holder uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    mine record;
    h record;
BEGIN
    DELETE FROM slots WHERE x = sx AND key = old_key AND binding_id = holder
        RETURNING live_from, live_until INTO mine;
    IF NOT FOUND OR new_key IS NULL THEN
        RETURN;
    END IF;
    SELECT binding_id, live_from, live_until INTO h FROM slots WHERE x = sx AND key = new_key;
    IF FOUND AND h.binding_id <> holder
       AND h.live_from < mine.live_until AND mine.live_from < h.live_until THEN
        RAISE WARNING 'bindings % and % overlap on one party of %', h.binding_id, holder, sx;
    END IF;
    -- One statement, so that a binding taking the key at the same moment
    -- waits on it rather than failing it.
    INSERT INTO slots (x, key, binding_id, live_from, live_until)
    VALUES (sx, new_key, holder, mine.live_from, mine.live_until)
    ON CONFLICT (x, key) DO UPDATE
        SET binding_id = EXCLUDED.binding_id, live_from = EXCLUDED.live_from,
            live_until = EXCLUDED.live_until
        WHERE slots.live_until < EXCLUDED.live_until;
END $$;

CREATE OR REPLACE FUNCTION bindings_a_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('maskline.retoken', true) = 'on' THEN
        PERFORM retoken_slot(NEW.x, OLD.a, NEW.a, NEW.id);
    ELSE
        UPDATE slots SET key = NEW.a WHERE x = NEW.x AND key = OLD.a AND binding_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;

-- 0002's function, with a reseal's change of B's token moving its slot.
CREATE OR REPLACE FUNCTION bindings_hold_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
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
        IF current_setting('maskline.retoken', true) = 'on' THEN
            PERFORM retoken_slot(NEW.x, OLD.b, NEW.b, NEW.id);
        ELSE
            DELETE FROM slots WHERE x = OLD.x AND key = OLD.b AND binding_id = OLD.id;
            IF NEW.b IS NOT NULL AND NEW.live_until > changed THEN
                PERFORM take_slots(ARRAY[NEW.x], ARRAY[NEW.b::text], ARRAY[NEW.id],
                                   ARRAY[changed], ARRAY[NEW.live_until]);
            END IF;
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
