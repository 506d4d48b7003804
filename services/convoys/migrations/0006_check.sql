-- Digitalisation check, formation pool and programme figures (issue #12).

-- A convoy's facilitators decide whether its project outcomes may count, aggregated over at least three
-- companies and without names, in what the check tells companies that similar ones achieved.
ALTER TABLE convoys ADD COLUMN share_anonymised_results boolean NOT NULL DEFAULT false;

-- One row per completed check. Deliberately nothing about a person: no contact, no IP address, no cookie
-- or session id, and only the day (not the time) it was completed. Sector, size class and Bundesland are
-- coarse choices of the check's form.
CREATE TABLE check_results (
    id           uuid PRIMARY KEY,
    version      integer NOT NULL,
    answers      jsonb NOT NULL,
    scores       jsonb NOT NULL,
    overall      integer CHECK (overall IS NULL OR overall BETWEEN 0 AND 100),
    sector       text NOT NULL DEFAULT '',
    size_class   text NOT NULL DEFAULT '',
    region       text NOT NULL DEFAULT '',
    completed_on date NOT NULL DEFAULT current_date
);
CREATE INDEX check_results_completed ON check_results (completed_on);

-- The formation pool: a company asked to join a convoy on a theme, with the contact's explicit consent
-- (consent_at). The only table of the check that holds personal data.
CREATE TABLE pool_requests (
    id               uuid PRIMARY KEY,
    check_id         uuid REFERENCES check_results (id),
    theme            text NOT NULL,
    company_name     text NOT NULL,
    sector           text NOT NULL DEFAULT '',
    size_class       text NOT NULL DEFAULT '',
    region           text NOT NULL DEFAULT '',
    contact_name     text NOT NULL,
    contact_email    text NOT NULL,
    contact_language text NOT NULL,
    message          text NOT NULL DEFAULT '',
    consent_at       timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'formed', 'withdrawn')),
    convoy_id        uuid REFERENCES convoys (id),
    company_id       uuid REFERENCES companies (id),
    formed_by        uuid REFERENCES people (id),
    formed_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pool_requests_waiting ON pool_requests (theme, created_at) WHERE status = 'waiting';
CREATE INDEX pool_requests_email ON pool_requests (lower(contact_email), created_at);
CREATE INDEX pool_requests_convoy ON pool_requests (convoy_id) WHERE convoy_id IS NOT NULL;
