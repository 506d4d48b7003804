-- services/milestones: members flag reports and comments; the convoy's facilitators resolve them.
-- One open flag per person and object (a second is a no-op); resolving closes every open flag on the
-- object at once (dismissed: nothing changed; acted: the object was hidden). Flags go with the content
-- they are about when that is removed (retention).

CREATE TABLE flags (
    id              uuid PRIMARY KEY,
    convoy_id       uuid NOT NULL,
    object_type     text NOT NULL CHECK (object_type IN ('report', 'comment')),
    object_id       uuid NOT NULL,
    report_id       uuid NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    comment_id      uuid REFERENCES comments (id) ON DELETE CASCADE,
    flagged_by      uuid NOT NULL,
    reason          text NOT NULL CHECK (reason IN ('spam', 'off_topic', 'confidential', 'offensive', 'other')),
    note            text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    resolved_by     uuid,
    resolution      text CHECK (resolution IN ('dismissed', 'acted')),
    resolution_note text NOT NULL DEFAULT '',
    CHECK ((object_type = 'report') = (comment_id IS NULL)),
    CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);
CREATE UNIQUE INDEX flags_open_once ON flags (object_id, flagged_by) WHERE resolved_at IS NULL;
CREATE INDEX flags_open_convoy ON flags (convoy_id, created_at) WHERE resolved_at IS NULL;
-- The facilitator digest counts the flags open at a moment (created before, resolved after it).
CREATE INDEX flags_convoy_time ON flags (convoy_id, created_at, resolved_at);
