-- One row per message the notifier means to send. The key is stable (event, recipient,
-- channel), so a redelivered event never sends a second message.
-- sending: claimed, being sent · sent · failed: refused for good · retrying: a transient failure,
-- the next attempt may send · uncertain: an attempt died between claiming and recording (a crash);
-- never resent automatically, listed by `convoy deliveries --uncertain` for a person to decide.
CREATE TABLE deliveries (
    key          text PRIMARY KEY,
    event_id     uuid NOT NULL,
    channel      text NOT NULL CHECK (channel IN ('email', 'slack')),
    recipient    text NOT NULL,
    status       text NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'retrying', 'uncertain')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_attention ON deliveries (status, created_at) WHERE status IN ('failed', 'uncertain');
