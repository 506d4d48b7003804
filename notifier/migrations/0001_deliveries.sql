-- One row per message the notifier means to send. The key is stable (event, recipient,
-- channel), so a redelivered event never sends a second message.
CREATE TABLE deliveries (
    key          text PRIMARY KEY,
    event_id     uuid NOT NULL,
    channel      text NOT NULL CHECK (channel IN ('email', 'slack')),
    recipient    text NOT NULL,
    status       text NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE INDEX deliveries_event ON deliveries (event_id);
