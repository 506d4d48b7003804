-- services/milestones: observer seats (issue #22), projected from observer.joined / observer.removed
-- (with a read-through on a miss, as for members). An observer reads what members read; every write
-- refuses them (403).
CREATE TABLE observers (
    convoy_id uuid NOT NULL,
    person_id uuid NOT NULL,
    PRIMARY KEY (convoy_id, person_id)
);
CREATE INDEX observers_person ON observers (person_id);
