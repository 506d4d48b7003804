-- Issue #18: the "new convoy" form carries a one-time key; the same person sending it again (back +
-- resubmit, a double click) gets the convoy the first request created, never a second one. The key
-- row is inserted before the convoy in the same transaction, so of two racing requests one waits on
-- the primary key and then finds the other's convoy.
CREATE TABLE convoy_form_keys (
    person_id  uuid NOT NULL REFERENCES people (id),
    form_key   uuid NOT NULL,
    convoy_id  uuid NOT NULL REFERENCES convoys (id) DEFERRABLE INITIALLY DEFERRED,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, form_key)
);
