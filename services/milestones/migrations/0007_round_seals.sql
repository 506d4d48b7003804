-- services/milestones: one boundary for a round (issue #17).
-- When the scheduler closes a cycle (on schedule or "close now") it first seals it here, in the
-- same order: the seal records the cycle as closed and assigns every report not yet in a digest
-- (digest_cycle IS NULL) of that cycle or an earlier one to that cycle's digest. A report posted
-- after the seal is late and waits for the next seal, where it is a late addendum; a report can
-- be edited only while it is in no sealed digest. Seals and report inserts of a convoy serialize
-- on a transaction-level advisory lock (exclusive for the seal, shared for a report), so a report
-- committed in the same instant as the close ends up in exactly one digest.
CREATE TABLE round_seals (
    convoy_id uuid NOT NULL,
    cycle_index integer NOT NULL CHECK (cycle_index >= 0),
    sealed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (convoy_id, cycle_index)
);

ALTER TABLE reports ADD COLUMN digest_cycle integer;

-- Reports from before seals existed: those of every cycle but each convoy's newest one count as
-- gone out in their own cycle's digest (as the time-based rule computed it); the newest cycle's
-- reports wait for its seal.
UPDATE reports r SET digest_cycle = r.cycle_index
  FROM (SELECT convoy_id, max(cycle_index) AS newest FROM reports GROUP BY convoy_id) n
 WHERE n.convoy_id = r.convoy_id AND r.cycle_index < n.newest;

CREATE INDEX reports_digest ON reports (convoy_id, digest_cycle);
