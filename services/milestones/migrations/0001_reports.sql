-- services/milestones: digital projects, milestones, reports, comments, kudos, help offers.

-- Projections kept from services/convoys events (with a read-through on a miss).
CREATE TABLE convoys (
    convoy_id  uuid PRIMARY KEY,
    name       text NOT NULL,
    timezone   text NOT NULL,
    language   text NOT NULL,
    cadence    jsonb NOT NULL,
    start_date date NOT NULL,
    status     text NOT NULL DEFAULT 'forming'
);

CREATE TABLE companies (
    company_id uuid PRIMARY KEY,
    convoy_id  uuid NOT NULL,
    name       text NOT NULL,
    active     boolean NOT NULL DEFAULT true
);
CREATE INDEX companies_convoy ON companies (convoy_id);

CREATE TABLE members (
    person_id  uuid NOT NULL,
    company_id uuid NOT NULL,
    convoy_id  uuid NOT NULL,
    PRIMARY KEY (person_id, company_id)
);
CREATE INDEX members_convoy_person ON members (convoy_id, person_id);

CREATE TABLE facilitators (
    convoy_id uuid NOT NULL,
    person_id uuid NOT NULL,
    PRIMARY KEY (convoy_id, person_id)
);

-- One digital project per company in a convoy; progress is derived from its milestones.
CREATE TABLE projects (
    id           uuid PRIMARY KEY,
    convoy_id    uuid NOT NULL,
    company_id   uuid NOT NULL UNIQUE,
    title        text NOT NULL,
    goal         text NOT NULL DEFAULT '',
    project_type text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_convoy ON projects (convoy_id);

CREATE TABLE milestones (
    id            uuid PRIMARY KEY,
    project_id    uuid NOT NULL REFERENCES projects (id),
    convoy_id     uuid NOT NULL,
    company_id    uuid NOT NULL,
    title         text NOT NULL,
    target_date   date,
    weight        smallint NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 10),
    position      integer NOT NULL,
    status        text NOT NULL DEFAULT 'not_started'
                  CHECK (status IN ('not_started', 'in_progress', 'done', 'blocked')),
    catalogue_key text,
    completed_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    removed_at    timestamptz
);
CREATE INDEX milestones_project ON milestones (project_id, position) WHERE removed_at IS NULL;
CREATE INDEX milestones_convoy ON milestones (convoy_id) WHERE removed_at IS NULL;

CREATE TABLE reports (
    id                uuid PRIMARY KEY,
    convoy_id         uuid NOT NULL,
    company_id        uuid NOT NULL,
    author_id         uuid NOT NULL,
    cycle_index       integer NOT NULL,
    late              boolean NOT NULL DEFAULT false,
    done              text NOT NULL,
    next              text NOT NULL DEFAULT '',
    blockers          text NOT NULL DEFAULT '',
    help_wanted       boolean NOT NULL DEFAULT false,
    help_topic        text NOT NULL DEFAULT '',
    help_milestone_id uuid,
    mood              smallint CHECK (mood BETWEEN 1 AND 5),
    facilitator_note  text NOT NULL DEFAULT '',
    version           integer NOT NULL DEFAULT 1,
    submitted_at      timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    hidden_at         timestamptz,
    hidden_reason     text NOT NULL DEFAULT '',
    ts_config         regconfig NOT NULL,
    search            tsvector GENERATED ALWAYS AS (
                          to_tsvector(ts_config, done || ' ' || next || ' ' || blockers || ' ' || help_topic)
                      ) STORED,
    UNIQUE (company_id, cycle_index)
);
CREATE INDEX reports_timeline ON reports (convoy_id, submitted_at DESC, id DESC);
CREATE INDEX reports_convoy_cycle ON reports (convoy_id, cycle_index);
CREATE INDEX reports_search ON reports USING gin (search);

-- Every edit keeps the previous version.
CREATE TABLE report_versions (
    report_id uuid NOT NULL REFERENCES reports (id),
    version   integer NOT NULL,
    editor_id uuid NOT NULL,
    saved_at  timestamptz NOT NULL DEFAULT now(),
    body      jsonb NOT NULL,
    PRIMARY KEY (report_id, version)
);

-- Milestone statuses a report touched.
CREATE TABLE report_milestones (
    report_id    uuid NOT NULL REFERENCES reports (id),
    milestone_id uuid NOT NULL REFERENCES milestones (id),
    status       text NOT NULL,
    PRIMARY KEY (report_id, milestone_id)
);

-- Commitments made in a report for the next cycle, and how they were kept (reviewed in a later report).
CREATE TABLE commitments (
    id           uuid PRIMARY KEY,
    report_id    uuid NOT NULL REFERENCES reports (id),
    convoy_id    uuid NOT NULL,
    company_id   uuid NOT NULL,
    cycle_index  integer NOT NULL,
    position     integer NOT NULL,
    text         text NOT NULL,
    outcome      text CHECK (outcome IN ('done', 'partly', 'not_yet')),
    outcome_note text NOT NULL DEFAULT '',
    reviewed_in  uuid REFERENCES reports (id)
);
CREATE INDEX commitments_report ON commitments (report_id, position);
CREATE INDEX commitments_company ON commitments (company_id, cycle_index);

CREATE TABLE comments (
    id         uuid PRIMARY KEY,
    report_id  uuid NOT NULL REFERENCES reports (id),
    convoy_id  uuid NOT NULL,
    parent_id  uuid REFERENCES comments (id),
    author_id  uuid NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    hidden_at  timestamptz
);
CREATE INDEX comments_report ON comments (report_id, created_at);

CREATE TABLE kudos (
    report_id uuid NOT NULL REFERENCES reports (id),
    person_id uuid NOT NULL,
    convoy_id uuid NOT NULL,
    given_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (report_id, person_id)
);

CREATE TABLE help_offers (
    id         uuid PRIMARY KEY,
    report_id  uuid NOT NULL REFERENCES reports (id),
    person_id  uuid NOT NULL,
    company_id uuid NOT NULL,
    message    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (report_id, person_id)
);
