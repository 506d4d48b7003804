-- services/milestones: the convoy's new version travels in its notification (issue #21, CPU per report).
-- Migration 0011 notified the convoy id alone, and the forwarder (services/runtime/versions.py) read the
-- versions back with a statement of its own for every commit that changed a convoy: one more round trip
-- per report. The payload is now `<convoy id> <version>`: the version this bump made. The row stays locked
-- until the commit, so the last bump of a transaction carries the version it commits; a transaction that
-- bumps a convoy more than once sends one notification per bump (distinct payloads are not merged), and
-- the forwarder keeps the largest. A payload without a version (the old form) is still read back.
CREATE OR REPLACE FUNCTION touch_convoy(cid uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    IF cid IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO convoy_versions AS cv (convoy_id, version) VALUES (cid, 1)
        ON CONFLICT (convoy_id) DO UPDATE SET version = cv.version + 1
        RETURNING cv.version INTO v;
    PERFORM pg_notify('convoy_versions_' || current_schema(), cid::text || ' ' || v::text);
END $$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION touch_convoy(uuid) SET search_path = %I', current_schema());
END $$;
