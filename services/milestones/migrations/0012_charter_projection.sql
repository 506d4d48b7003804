-- services/milestones: a projection of the convoys' charters (issue #21, ingest without the extra hops).
-- A representative writes reports and comments only once they accepted the convoy's current charter.
-- Instead of asking services/convoys (MEMBERSHIP_GET) at every write, milestones keeps:
--   convoys.charter_version: the convoy's current charter version (`charter.updated`, and before a
--     change is answered services/convoys sets it here synchronously: CHARTER_SET);
--   members.charter_version: the version the representative accepted (`person.joined` carries the one
--     accepted with the invitation, `charter.accepted` a later one).
-- NULL: not known here (rows from before this migration, or projected from a read-through): the write
-- then asks services/convoys as before. A projection that says "not accepted" is never believed alone:
-- the write asks services/convoys too (an acceptance a second ago counts).
ALTER TABLE convoys ADD COLUMN charter_version integer;
ALTER TABLE members ADD COLUMN charter_version integer;
