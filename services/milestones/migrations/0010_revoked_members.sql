-- services/milestones: a removal takes effect here before services/convoys answers it (issue #19).
-- services/convoys calls ACCESS_REVOKE after committing a removal; the projection forgets the member
-- at once and remembers when. A `person.joined` event older than that (still on its way when the
-- removal was answered) then does not re-admit them; a later rejoin does.
CREATE TABLE revoked_members (
    person_id  uuid NOT NULL,
    company_id uuid NOT NULL,
    convoy_id  uuid NOT NULL,
    revoked_at timestamptz NOT NULL,
    PRIMARY KEY (person_id, company_id)
);
