-- services/convoys: a change counter per convoy for what CONVOY_RECIPIENTS and CONVOY_CHAT_GET answer
-- (issue #21, the notifier's recipients without a request per report). Every change to those answers
-- bumps `version` in the same transaction, at its commit (deferred constraint triggers), and announces
-- the convoy on the NOTIFY channel `recipient_versions_<schema>`, delivered once the transaction has
-- committed: the convoy's name and language, its chat channels, its companies (name, removal), its
-- memberships and observer seats (added, removed, moved), and the people in them (name, email,
-- language, erasure). Updates that change none of that (a charter acceptance, a convoy's status, a
-- sign-in) bump nothing. services/convoys forwards the announcements to the notifier over NATS
-- (services/runtime/versions.py); the notifier reuses a recipients answer only while its version is
-- the newest it heard of.
CREATE TABLE recipient_versions (
    convoy_id uuid PRIMARY KEY,
    version   bigint NOT NULL
);

CREATE FUNCTION touch_recipients(cid uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cid IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO recipient_versions AS v (convoy_id, version) VALUES (cid, 1)
        ON CONFLICT (convoy_id) DO UPDATE SET version = v.version + 1;
    PERFORM pg_notify('recipient_versions_' || current_schema(), cid::text);
END $$;

-- Tables with a convoy_id column (companies, memberships, observers, chat_webhooks).
CREATE FUNCTION bump_recipients() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM touch_recipients(OLD.convoy_id);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.convoy_id IS DISTINCT FROM OLD.convoy_id) THEN
        PERFORM touch_recipients(NEW.convoy_id);
    END IF;
    RETURN NULL;
END $$;

-- The convoys table itself (its key is id).
CREATE FUNCTION bump_recipients_of_convoy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM touch_recipients(OLD.id);
    ELSE
        PERFORM touch_recipients(NEW.id);
    END IF;
    RETURN NULL;
END $$;

-- A person: every convoy they are (or were) a member or an observer of.
CREATE FUNCTION bump_recipients_of_person() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cid uuid;
BEGIN
    FOR cid IN
        SELECT convoy_id FROM memberships WHERE person_id = NEW.id AND removed_at IS NULL
        UNION
        SELECT convoy_id FROM observers WHERE person_id = NEW.id AND removed_at IS NULL
    LOOP
        PERFORM touch_recipients(cid);
    END LOOP;
    RETURN NULL;
END $$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION touch_recipients(uuid) SET search_path = %I', current_schema());
    EXECUTE format('ALTER FUNCTION bump_recipients() SET search_path = %I', current_schema());
    EXECUTE format('ALTER FUNCTION bump_recipients_of_convoy() SET search_path = %I', current_schema());
    EXECUTE format('ALTER FUNCTION bump_recipients_of_person() SET search_path = %I', current_schema());
END $$;

CREATE CONSTRAINT TRIGGER convoys_recipients AFTER INSERT OR DELETE OR UPDATE OF name, language ON convoys
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_recipients_of_convoy();
CREATE CONSTRAINT TRIGGER chat_webhooks_recipients AFTER INSERT OR UPDATE OR DELETE ON chat_webhooks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_recipients();
CREATE CONSTRAINT TRIGGER companies_recipients AFTER INSERT OR DELETE OR UPDATE OF name, removed_at, convoy_id
    ON companies DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_recipients();
CREATE CONSTRAINT TRIGGER memberships_recipients
    AFTER INSERT OR DELETE OR UPDATE OF removed_at, person_id, company_id, convoy_id ON memberships
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_recipients();
CREATE CONSTRAINT TRIGGER observers_recipients
    AFTER INSERT OR DELETE OR UPDATE OF removed_at, person_id, convoy_id ON observers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump_recipients();
-- People: only the columns a recipients answer shows (and the erasure), and only when they changed.
CREATE CONSTRAINT TRIGGER people_recipients AFTER UPDATE OF name, email, language, erased_at ON people
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.email IS DISTINCT FROM NEW.email
          OR OLD.language IS DISTINCT FROM NEW.language OR OLD.erased_at IS DISTINCT FROM NEW.erased_at)
    EXECUTE FUNCTION bump_recipients_of_person();
