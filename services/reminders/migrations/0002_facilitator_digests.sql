-- Weekly facilitator digests fired (one row per ISO week: fired once, whoever leads).
CREATE TABLE facilitator_digests (
    period   text PRIMARY KEY,
    fired_at timestamptz NOT NULL
);
