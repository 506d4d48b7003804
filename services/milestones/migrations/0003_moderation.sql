-- services/milestones: facilitators hide and restore comments (with a reason) and lock a report's comments.
-- reports.hidden_at and reports.hidden_reason, comments.hidden_at exist since 0001.

ALTER TABLE comments ADD COLUMN hidden_reason text NOT NULL DEFAULT '';
ALTER TABLE reports ADD COLUMN comments_locked_at timestamptz;
