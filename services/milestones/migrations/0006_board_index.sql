-- services/milestones: the progress board counts each company's visible reports and its on-time
-- streak from this index alone (index-only scans, newest cycle first), so five years of history
-- cost a few hundred index entries per company, not a heap page per report. Hidden reports are
-- not in it: they never count on the board.
CREATE INDEX reports_board ON reports (company_id, cycle_index DESC) INCLUDE (late) WHERE hidden_at IS NULL;
