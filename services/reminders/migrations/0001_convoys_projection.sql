-- Convoys the scheduler knows of (kept from convoy.created events); check-in cycles
-- will be scheduled from here in each convoy's time zone.
CREATE TABLE convoys (
    convoy_id uuid PRIMARY KEY,
    name      text NOT NULL,
    timezone  text NOT NULL,
    language  text NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now()
);
