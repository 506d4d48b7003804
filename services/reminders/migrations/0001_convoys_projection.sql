-- services/reminders: the schedule of every convoy's check-in cycles.

-- Projection of convoys (from services/convoys events) plus the schedule settings facilitators make here.
CREATE TABLE convoys (
    convoy_id          uuid PRIMARY KEY,
    name               text NOT NULL,
    timezone           text NOT NULL,
    language           text NOT NULL,
    cadence            jsonb NOT NULL,
    start_date         date NOT NULL,
    status             text NOT NULL DEFAULT 'forming',
    holiday_region     text NOT NULL DEFAULT '',
    holiday_policy     text NOT NULL DEFAULT 'skip' CHECK (holiday_policy IN ('skip', 'move', 'ignore')),
    nudge_offsets      integer[] NOT NULL DEFAULT '{24,2}',
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE companies (
    company_id uuid PRIMARY KEY,
    convoy_id  uuid NOT NULL,
    name       text NOT NULL,
    active     boolean NOT NULL DEFAULT true
);
CREATE INDEX companies_convoy ON companies (convoy_id);

-- Materialised cycles: their times, what was fired and when. A fire and its event commit together.
CREATE TABLE cycles (
    convoy_id    uuid NOT NULL,
    cycle_index  integer NOT NULL,
    opens_at     timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    closes_at    timestamptz NOT NULL,
    skipped      boolean NOT NULL DEFAULT false,
    skip_reason  text NOT NULL DEFAULT '',
    opened_at    timestamptz,
    nudges_done  integer NOT NULL DEFAULT 0,
    closed_at    timestamptz,
    PRIMARY KEY (convoy_id, cycle_index)
);
CREATE INDEX cycles_pending ON cycles (closes_at) WHERE closed_at IS NULL;

-- Companies not expected to report: away for a date range (facilitator), or a cycle skipped
-- with a reason (representative).
CREATE TABLE absences (
    id          uuid PRIMARY KEY,
    convoy_id   uuid NOT NULL,
    company_id  uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('away', 'skipped')),
    from_date   date,
    until_date  date,
    cycle_index integer,
    reason      text NOT NULL DEFAULT '',
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX absences_convoy ON absences (convoy_id);
