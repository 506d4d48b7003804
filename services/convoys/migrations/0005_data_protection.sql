-- Data protection (issue #8).
-- A person who deletes their account keeps a row (memberships, invitations and the audit log
-- refer to it) without personal data: name '', email 'erased-<id>' (not an address), erased_at set.
ALTER TABLE people ADD COLUMN erased_at timestamptz;

-- What happens to a company's reports and comments after it leaves (services/milestones enforces
-- it): NULL keeps them for the convoy; N removes them N days after the company left.
ALTER TABLE convoys ADD COLUMN retention_days integer CHECK (retention_days IS NULL OR retention_days >= 0);

-- Audit entries name objects by id, never by email address: earlier versions put the invitee's
-- address ('email') into person.invited and the asking contact's address ('contact') into
-- join.requested. This one-time, reviewed correction removes them. The append-only trigger is
-- a statement trigger owned by this schema; it is disabled for this statement only, inside the
-- migration's transaction (no endpoint and no service code can do this).
ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
UPDATE audit_log SET details = details - 'email' - 'contact' WHERE details ? 'email' OR details ? 'contact';
ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;
