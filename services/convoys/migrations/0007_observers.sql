-- services/convoys: observer seats (issue #22). An observer reads what a convoy's members read
-- (timeline, reports, comments, board, schedule, digests by email) and writes nothing. Invited by
-- the convoy's facilitators, or by a company's representative as the company's second reader
-- (company_id: that company; such a seat ends when the company leaves). Ended seats stay
-- (removed_at), like memberships, so history and the audit trail keep their meaning.
CREATE TABLE observers (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id      uuid NOT NULL REFERENCES people (id),
    convoy_id      uuid NOT NULL REFERENCES convoys (id),
    company_id     uuid REFERENCES companies (id),
    note           text NOT NULL DEFAULT '',
    invited_by     uuid REFERENCES people (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    removed_at     timestamptz,
    removed_reason text
);
CREATE UNIQUE INDEX observers_active ON observers (person_id, convoy_id) WHERE removed_at IS NULL;
CREATE INDEX observers_convoy ON observers (convoy_id) WHERE removed_at IS NULL;

-- An invitation is to represent a company (company_id) or to observe (role 'observer'; company_id
-- is the company whose second reader they will be, or NULL when the facilitators invite).
ALTER TABLE invitations ADD COLUMN role text NOT NULL DEFAULT 'representative'
    CHECK (role IN ('representative', 'observer'));
ALTER TABLE invitations ADD COLUMN note text NOT NULL DEFAULT '';
ALTER TABLE invitations ALTER COLUMN company_id DROP NOT NULL;
ALTER TABLE invitations ADD CONSTRAINT invitations_company_or_observer
    CHECK (company_id IS NOT NULL OR role = 'observer');
