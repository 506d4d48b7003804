-- Feedback by email (issue #17): comments, replies and kudos on a report are collected for
-- CONVOY_FEEDBACK_WINDOW_S from the first one, then sent as one email per person (notifier/feedback.py).
-- A batch is open (closed_at NULL) until its window has passed; then a flusher closes it, sends
-- (delivery keys feedback:{batch}:{person} / reply:{batch}:{person}) and deletes it. A flusher that
-- died mid-way leaves the batch closed with an expired lease: another one takes it over, and the
-- delivery log sends only what was not sent yet.
CREATE TABLE feedback_batches (
    id          uuid PRIMARY KEY,
    report_id   uuid NOT NULL,
    convoy_id   uuid NOT NULL,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    due_at      timestamptz NOT NULL,
    closed_at   timestamptz,
    lease_until timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);
-- One open batch per report: what comes in while it is open joins it.
CREATE UNIQUE INDEX feedback_batches_open ON feedback_batches (report_id) WHERE closed_at IS NULL;
CREATE INDEX feedback_batches_due ON feedback_batches (due_at) WHERE closed_at IS NULL;
CREATE INDEX feedback_batches_leased ON feedback_batches (lease_until) WHERE closed_at IS NOT NULL;

-- What came in: one row per event (a redelivered event adds nothing).
CREATE TABLE feedback_items (
    event_id    uuid PRIMARY KEY,
    batch_id    uuid NOT NULL REFERENCES feedback_batches (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('comment', 'kudos')),
    actor_id    uuid NOT NULL,
    comment_id  uuid,
    parent_id   uuid,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX feedback_items_batch ON feedback_items (batch_id, occurred_at);
