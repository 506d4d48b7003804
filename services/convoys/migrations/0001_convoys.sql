-- services/convoys: convoys, companies, people, roles, memberships, invitations,
-- join requests, sign-in links, sessions, API tokens, audit log.

CREATE TABLE people (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    email          text NOT NULL,
    language       text NOT NULL CHECK (language IN ('de', 'en')),
    timezone       text NOT NULL DEFAULT 'Europe/Berlin',
    is_admin       boolean NOT NULL DEFAULT false,
    is_facilitator boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX people_email ON people (lower(email));

CREATE TABLE convoys (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    theme             text NOT NULL DEFAULT '',
    description       text NOT NULL DEFAULT '',
    timezone          text NOT NULL,
    language          text NOT NULL CHECK (language IN ('de', 'en')),
    cadence           jsonb NOT NULL,
    start_date        date,
    end_date          date CHECK (end_date IS NULL OR start_date IS NULL OR end_date >= start_date),
    open_for_requests boolean NOT NULL DEFAULT false,
    status            text NOT NULL DEFAULT 'forming'
                      CHECK (status IN ('forming', 'active', 'paused', 'completed')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A convoy may have several facilitators.
CREATE TABLE convoy_facilitators (
    convoy_id uuid NOT NULL REFERENCES convoys (id),
    person_id uuid NOT NULL REFERENCES people (id),
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (convoy_id, person_id)
);
CREATE INDEX convoy_facilitators_person ON convoy_facilitators (person_id);

CREATE TABLE companies (
    id             uuid PRIMARY KEY,
    convoy_id      uuid NOT NULL REFERENCES convoys (id),
    name           text NOT NULL,
    sector         text NOT NULL DEFAULT '',
    size_class     text NOT NULL DEFAULT '',
    region         text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    removed_at     timestamptz,
    removed_reason text
);
CREATE UNIQUE INDEX companies_active_name ON companies (convoy_id, lower(name)) WHERE removed_at IS NULL;
CREATE INDEX companies_convoy ON companies (convoy_id);

-- A person represents a company in a convoy (the company is the unit that reports).
-- Removed memberships stay (removed_at) so history and the audit trail keep their meaning.
CREATE TABLE memberships (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id      uuid NOT NULL REFERENCES people (id),
    company_id     uuid NOT NULL REFERENCES companies (id),
    convoy_id      uuid NOT NULL REFERENCES convoys (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    removed_at     timestamptz,
    removed_reason text
);
CREATE UNIQUE INDEX memberships_active ON memberships (person_id, convoy_id) WHERE removed_at IS NULL;
CREATE INDEX memberships_convoy ON memberships (convoy_id) WHERE removed_at IS NULL;
CREATE INDEX memberships_company ON memberships (company_id) WHERE removed_at IS NULL;

-- Secrets (invitation, sign-in, session and API tokens) are stored only as SHA-256 hashes.
CREATE TABLE invitations (
    id          uuid PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    convoy_id   uuid NOT NULL REFERENCES convoys (id),
    company_id  uuid NOT NULL REFERENCES companies (id),
    email       text NOT NULL,
    name        text NOT NULL DEFAULT '',
    language    text NOT NULL,
    invited_by  uuid REFERENCES people (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid REFERENCES people (id),
    revoked_at  timestamptz
);
CREATE INDEX invitations_email ON invitations (lower(email), created_at);

CREATE TABLE join_requests (
    id               uuid PRIMARY KEY,
    convoy_id        uuid NOT NULL REFERENCES convoys (id),
    company_name     text NOT NULL,
    sector           text NOT NULL DEFAULT '',
    size_class       text NOT NULL DEFAULT '',
    region           text NOT NULL DEFAULT '',
    contact_name     text NOT NULL,
    contact_email    text NOT NULL,
    contact_language text NOT NULL,
    message          text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'declined')),
    reason           text NOT NULL DEFAULT '',
    company_id       uuid REFERENCES companies (id),
    decided_by       uuid REFERENCES people (id),
    decided_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX join_requests_convoy ON join_requests (convoy_id, status, created_at);
CREATE INDEX join_requests_email ON join_requests (lower(contact_email), created_at);

-- Every sign-in request, known address or not (for the per-address rate limit).
CREATE TABLE sign_in_requests (
    email_hash   bytea NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_requests_email ON sign_in_requests (email_hash, requested_at);

CREATE TABLE sign_in_links (
    token_hash bytea PRIMARY KEY,
    person_id  uuid NOT NULL REFERENCES people (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

-- Browser sessions (cookie, with a CSRF token) and short-lived access tokens (bearer).
CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    person_id   uuid NOT NULL REFERENCES people (id),
    kind        text NOT NULL CHECK (kind IN ('browser', 'access')),
    csrf_token  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX sessions_person ON sessions (person_id, created_at);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE,
    person_id    uuid NOT NULL REFERENCES people (id),
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_person ON api_tokens (person_id);

-- Append-only record of membership and administration actions.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    convoy_id   uuid,
    actor_id    uuid,
    action      text NOT NULL,
    object_type text NOT NULL,
    object_id   text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_convoy ON audit_log (convoy_id, id);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
