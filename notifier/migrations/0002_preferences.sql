-- Each person's notification preferences (defaults: everything on). Transactional emails
-- (sign-in links, invitations) are always sent.
CREATE TABLE preferences (
    person_id  uuid PRIMARY KEY,
    email      boolean NOT NULL DEFAULT true,
    digest     boolean NOT NULL DEFAULT true,
    immediate  jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
