-- services/milestones: the commitments a report reviewed are read with every report (its page, the
-- timeline, a kudos' answer, the feedback email: repository/reports.py REPORT_COLUMNS); without an index
-- that lookup read the whole commitments table (issue #21).
CREATE INDEX commitments_reviewed_in ON commitments (reviewed_in) WHERE reviewed_in IS NOT NULL;
