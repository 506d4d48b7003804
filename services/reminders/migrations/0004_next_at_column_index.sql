-- Issue #21: the due query reads a plain column through a partial index on it.
--
-- 0003 indexed the expression coalesce(next_at, opens_at) in a partial index. PostgreSQL keeps no
-- statistics it will use for an expression of a partial index, so the planner guessed a third of the
-- open cycles due at any instant: a hash join that reads every convoy as soon as anything is due.
-- From now on next_at is always set on a cycle that is neither closed nor skipped (its opening while
-- not yet opened: what coalesce gave), so the column's own statistics apply.
UPDATE cycles SET next_at = opens_at WHERE next_at IS NULL AND closed_at IS NULL AND NOT skipped;
-- The same for any writer that still leaves it NULL (a replica of the previous version during a
-- rolling update, a hand-written INSERT): such a cycle is due at its opening, as with coalesce.
-- The WHEN clause keeps the cost off every row that has it set (all rows the scheduler writes).
CREATE FUNCTION cycles_next_at_default() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.next_at := NEW.opens_at;
    RETURN NEW;
END $$;
CREATE TRIGGER cycles_next_at_default BEFORE INSERT OR UPDATE ON cycles FOR EACH ROW
    WHEN (NEW.next_at IS NULL AND NEW.closed_at IS NULL AND NOT NEW.skipped)
    EXECUTE FUNCTION cycles_next_at_default();
CREATE INDEX cycles_next_at ON cycles (next_at) WHERE closed_at IS NULL AND NOT skipped;
DROP INDEX cycles_due;

-- Convoys whose plan ran out, in the order the tick pages through them (planned_until, convoy_id).
CREATE INDEX convoys_plan_expiry ON convoys (planned_until, convoy_id) WHERE status = 'active';
DROP INDEX convoys_planned_until;
