-- A set-based tick (issue #9): a tick asks the database what is due and which convoys need
-- re-planning, instead of walking every active convoy.

-- Re-plan a convoy only when its plan may have changed: every change of its settings, cadence or
-- status bumps plan_version; a tick that materialised its cycles records the version it planned
-- (planned_version) and until when that plan holds (planned_until: the next check-in).
ALTER TABLE convoys
    ADD COLUMN plan_version    bigint NOT NULL DEFAULT 0,
    ADD COLUMN planned_version bigint,
    ADD COLUMN planned_until   timestamptz;
CREATE INDEX convoys_unplanned ON convoys (convoy_id)
    WHERE status = 'active' AND planned_version IS DISTINCT FROM plan_version;
CREATE INDEX convoys_planned_until ON convoys (planned_until) WHERE status = 'active';

-- When the cycle next needs the scheduler (schedule.py: next_action_at); NULL means "look at it
-- once it has opened" (rows written before this column, or reset by a schedule change).
ALTER TABLE cycles ADD COLUMN next_at timestamptz;
CREATE INDEX cycles_due ON cycles ((coalesce(next_at, opens_at))) WHERE closed_at IS NULL AND NOT skipped;
