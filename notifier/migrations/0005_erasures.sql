-- Data protection (issue #8): people who deleted their account (person.erased).
-- The person id (never reused) keeps their preferences from being recreated by an old unsubscribe
-- link; the SHA-256 of their address lets a message to it that was still in flight when they left
-- be dropped instead of sent (and logged). The hash is forgotten after two days (the messages
-- stream keeps messages one day).
CREATE TABLE erasures (
    person_id    uuid PRIMARY KEY,
    email_sha256 bytea,
    erased_at    timestamptz NOT NULL
);
CREATE INDEX erasures_email ON erasures (email_sha256) WHERE email_sha256 IS NOT NULL;
