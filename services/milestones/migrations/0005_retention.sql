-- Data protection (issue #8) in services/milestones.

-- Authors who deleted their account: their reports and comments stay, attributed to
-- "a former representative of <company>" (company_id NULL: they facilitated the convoy).
CREATE TABLE former_authors (
    person_id  uuid NOT NULL,
    convoy_id  uuid NOT NULL,
    company_id uuid,
    erased_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, convoy_id)
);

-- The convoy's retention rule (projected from services/convoys): NULL keeps a company's reports
-- and comments after it left; N removes them N days after it left.
ALTER TABLE convoys ADD COLUMN retention_days integer;

-- When a company left (company.left), and when its content was removed under the retention rule.
ALTER TABLE companies ADD COLUMN left_at timestamptz;
ALTER TABLE companies ADD COLUMN purged_at timestamptz;

-- Who represented a company when it left (the members projection forgets them): their comments,
-- kudos and help offers in the convoy are the company's content too.
CREATE TABLE departed_members (
    person_id  uuid NOT NULL,
    company_id uuid NOT NULL,
    convoy_id  uuid NOT NULL,
    left_at    timestamptz NOT NULL,
    PRIMARY KEY (person_id, company_id)
);
CREATE INDEX companies_left ON companies (left_at) WHERE left_at IS NOT NULL AND purged_at IS NULL;
