-- Projection of memberships, kept from the convoys service's person.joined events
-- (and filled on a miss by asking that service), used to authorize every report action.
CREATE TABLE members (
    person_id  uuid NOT NULL,
    company_id uuid NOT NULL,
    convoy_id  uuid NOT NULL,
    PRIMARY KEY (person_id, company_id)
);
CREATE INDEX members_convoy_person ON members (convoy_id, person_id);

CREATE TABLE reports (
    id           uuid PRIMARY KEY,
    convoy_id    uuid NOT NULL,
    company_id   uuid NOT NULL,
    author_id    uuid NOT NULL,
    done         text NOT NULL,
    next         text NOT NULL DEFAULT '',
    blockers     text NOT NULL DEFAULT '',
    help_wanted  text NOT NULL DEFAULT '',
    mood         smallint CHECK (mood BETWEEN 1 AND 5),
    submitted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reports_convoy_time ON reports (convoy_id, submitted_at DESC, id DESC);
