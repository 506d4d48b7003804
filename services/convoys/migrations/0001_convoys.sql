CREATE TABLE convoys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    theme       text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    timezone    text NOT NULL,
    language    text NOT NULL CHECK (language IN ('de', 'en')),
    status      text NOT NULL DEFAULT 'forming'
                CHECK (status IN ('forming', 'active', 'paused', 'completed')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE companies (
    id         uuid PRIMARY KEY,
    convoy_id  uuid NOT NULL REFERENCES convoys (id),
    name       text NOT NULL,
    sector     text NOT NULL DEFAULT '',
    region     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (convoy_id, name)
);
CREATE INDEX companies_convoy ON companies (convoy_id);

CREATE TABLE people (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL,
    language   text NOT NULL CHECK (language IN ('de', 'en')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX people_email ON people (lower(email));

-- A person represents a company in a convoy (the unit that reports is the company).
CREATE TABLE memberships (
    person_id  uuid NOT NULL REFERENCES people (id),
    company_id uuid NOT NULL REFERENCES companies (id),
    convoy_id  uuid NOT NULL REFERENCES convoys (id),
    role       text NOT NULL DEFAULT 'representative',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, company_id),
    UNIQUE (person_id, convoy_id)
);
CREATE INDEX memberships_convoy ON memberships (convoy_id);

-- Personal API tokens; only a SHA-256 of each token is stored.
CREATE TABLE api_tokens (
    token_hash bytea PRIMARY KEY,
    person_id  uuid NOT NULL REFERENCES people (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
