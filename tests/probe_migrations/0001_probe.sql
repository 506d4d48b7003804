CREATE TABLE seen (
    event_id uuid PRIMARY KEY,
    name     text NOT NULL
);
