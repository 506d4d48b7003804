-- services/convoys: each convoy's charter (confidentiality, tone, no sales pitches), which every
-- representative accepts. charter_text NULL: the default text Convoy ships, in the convoy's language
-- (version 1). A facilitator's change stores the text and adds one to the version.
ALTER TABLE convoys ADD COLUMN charter_text text;
ALTER TABLE convoys ADD COLUMN charter_version integer NOT NULL DEFAULT 1 CHECK (charter_version >= 1);
ALTER TABLE convoys ADD COLUMN charter_updated_at timestamptz;
-- The version a representative accepted (with the invitation, or later). 0: none yet, which is where
-- memberships made before charters existed start: their representatives accept before they post again.
ALTER TABLE memberships ADD COLUMN charter_version integer NOT NULL DEFAULT 0;
ALTER TABLE memberships ADD COLUMN charter_accepted_at timestamptz;
