-- cycles_pending (0001) is read by no query: the tick finds what is due through cycles_next_at (0004).
-- Every fire updates its cycle row, and an update that changes an indexed column (next_at, closed_at)
-- is not HOT, so each open wrote an entry into this index too (issue #21: 400,000 fires in a slot).
DROP INDEX IF EXISTS cycles_pending;
