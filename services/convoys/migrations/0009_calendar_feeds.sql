-- Calendar subscriptions (issue #22): each person's private iCalendar feed. Like every secret here
-- the token (cvc_...) is stored only as its SHA-256; at most one live feed per person (a new one
-- revokes the previous one in the same transaction).
CREATE TABLE calendar_feeds (
    id           uuid PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE,
    person_id    uuid NOT NULL REFERENCES people (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX calendar_feeds_live ON calendar_feeds (person_id) WHERE revoked_at IS NULL;
