-- services/milestones: a change counter per convoy (issue #21, conditional GETs).
-- Every change to what a convoy's timeline, board or search shows (reports and their edits,
-- milestones, commitments, comments, kudos, help offers, hides and restores, flags, seals, and the
-- projections that decide who sees what: members, facilitators, observers, companies, the convoy's
-- language and calendar) bumps `version` in the same transaction, at its commit (deferred constraint
-- triggers: the row lock is taken just before the commit, not for the whole transaction), and
-- announces the convoy on the NOTIFY channel `convoy_versions_<schema>`, which PostgreSQL delivers
-- only once the transaction has committed (one notification per convoy and transaction). The API
-- builds its ETags from the counter; services/milestones forwards the announcements to it over NATS.
CREATE TABLE convoy_versions (
    convoy_id uuid PRIMARY KEY,
    version   bigint NOT NULL
);

CREATE FUNCTION touch_convoy(cid uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cid IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO convoy_versions AS v (convoy_id, version) VALUES (cid, 1)
        ON CONFLICT (convoy_id) DO UPDATE SET version = v.version + 1;
    PERFORM pg_notify('convoy_versions_' || current_schema(), cid::text);
END $$;

-- Tables with a convoy_id column.
CREATE FUNCTION bump_convoy_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM touch_convoy(OLD.convoy_id);
    ELSE
        PERFORM touch_convoy(NEW.convoy_id);
    END IF;
    RETURN NULL;
END $$;

-- Tables that name a report only.
CREATE FUNCTION bump_convoy_version_of_report() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM touch_convoy((SELECT convoy_id FROM reports WHERE id = OLD.report_id));
    ELSE
        PERFORM touch_convoy((SELECT convoy_id FROM reports WHERE id = NEW.report_id));
    END IF;
    RETURN NULL;
END $$;

-- The functions run with this schema as their search path whoever's session fires them (a session with
-- another search path, such as the bench's set-up SQL, still finds convoy_versions and the channel).
DO $$
DECLARE
    t text;
BEGIN
    EXECUTE format('ALTER FUNCTION touch_convoy(uuid) SET search_path = %I', current_schema());
    EXECUTE format('ALTER FUNCTION bump_convoy_version() SET search_path = %I', current_schema());
    EXECUTE format('ALTER FUNCTION bump_convoy_version_of_report() SET search_path = %I', current_schema());
    FOREACH t IN ARRAY ARRAY[
        'convoys', 'companies', 'members', 'facilitators', 'observers', 'projects', 'milestones',
        'reports', 'commitments', 'comments', 'kudos', 'flags', 'round_seals', 'former_authors',
        'departed_members', 'revoked_members'
    ] LOOP
        EXECUTE format(
            'CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I'
            ' DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_convoy_version()',
            t || '_version', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['report_milestones', 'help_offers'] LOOP
        EXECUTE format(
            'CREATE CONSTRAINT TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I'
            ' DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_convoy_version_of_report()',
            t || '_version', t);
    END LOOP;
END $$;
