-- services/milestones: indexes for what the notifier asks per check-in cycle (digest, prompts).

-- Milestones completed in a cycle's window (the digest leads with them).
CREATE INDEX milestones_completed ON milestones (convoy_id, completed_at)
    WHERE completed_at IS NOT NULL AND removed_at IS NULL;

-- Open commitments of a convoy's companies (prompt context).
CREATE INDEX commitments_open ON commitments (convoy_id, cycle_index) WHERE reviewed_in IS NULL;
