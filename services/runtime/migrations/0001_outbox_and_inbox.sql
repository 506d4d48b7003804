-- Tables every service has in its own schema (search_path is set to that schema).

-- Transactional outbox: a state change and its event commit together; the relay publishes
-- rows to JetStream (Nats-Msg-Id = event_id) and deletes them once JetStream has acked.
CREATE TABLE outbox (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    subject     text        NOT NULL,
    data        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Inbox: events a consumer has processed, written in the same transaction as its effects,
-- so at-least-once delivery gives exactly-once effects.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
